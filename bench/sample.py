"""Sampling throughput: our DDIM sampler against diffusers' DDIMPipeline, and DCGAN, in one run.

* ours:      ``DDIM.sample`` (EMA U-Net, bf16 autocast, channels-last, torch.compile on CUDA),
             deterministic DDIM (eta = 0), uint8 images copied to the host;
* diffusers: ``DDIMPipeline`` with a ``UNet2DModel`` of the same size in bf16 (its
             fastest plain setting) and ``output_type="np"`` (images on the host);
* DCGAN:     ``DCGAN.sample`` of ``--dcgan-images`` images at ``--dcgan-resolution`` px,
             when the dcgan type is installed.

Prints a table with images/s, FLOPs per image (the network's forward FLOPs
times the number of steps) and the share of the GPU's bf16 peak reached.

    python bench/sample.py --device cuda --batch 500 --images 2000 --steps 50
    python bench/sample.py --device cpu --preset tiny --batch 8 --images 8 --steps 5 --dcgan-images 64

With ``--model DIR`` (a trained DDIM, e.g. ``bench/quick_preset.py``'s ``OUT/model``) it
measures samplers instead, each row from the same weights: images/s and, against
held-out real images (``--heldout``), the KID and the near-copy share of what they make.
Rows (``--rows``, comma-separated):

* ``ours:SAMPLER:STEPS[:PRECISION]``: ``DDIM.sample`` with ``dpmpp2m`` or ``ddim``; the
  precision ``auto`` (the app's: bf16 autocast on a CPU with bf16 instructions), ``bf16`` or ``fp32``;
* ``pipeline:STEPS[:clipped]``: diffusers ``DDIMPipeline`` (its ``DDIMScheduler`` given our noise
  schedule as ``trained_betas``, v-prediction, ``trailing`` spacing so it starts from pure noise as
  ours does) driving the same trained U-Net in fp32; ``clipped`` passes
  ``use_clipped_model_output=True`` (its default keeps the noise estimate of the unclipped ``x0``);
* ``diffusers-unet:STEPS[:PRECISION]``: ``DDIMPipeline`` with a ``UNet2DModel`` of the same size
  (random weights: speed only; fp32, or ``bf16`` weights). Our CPU model folds 2x2 patches into
  channels, so this one runs on the folded 16x16 map with 4x the channels: the same work per step.

    python bench/sample.py --model bench/out/sampler/ddim32/model --threads 1 \\
        --train-images ../shared/datasets/fashion-mnist/train/sandal --train-limit 150 \\
        --heldout ../shared/datasets/fashion-mnist/test/sandal \\
        --negatives ../shared/datasets/fashion-mnist/train
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for train.py's helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `apps`

from train import add_common_arguments, diffusers_unet, flops_per_image, our_config, peak_tflops, print_rows, sync  # noqa: E402

from apps.ml.ddim import DDIM  # noqa: E402
from apps.ml.engine import registry  # noqa: E402


def _timed_once(run, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - start


def bench_ours(args) -> dict:
    config = our_config(args)
    torch.manual_seed(0)
    gen = DDIM(config, device=args.device)
    r, c = args.resolution, args.channels
    x = torch.randn(2, c, r, r, device=args.device)
    with torch.no_grad(), gen._autocast():
        flops = flops_per_image(
            lambda: gen.ema.model(x, torch.tensor([10.0, 500.0], device=args.device)), backward=False
        )
    warm = _timed_once(
        lambda: gen.sample(args.batch, seed=1, steps=args.steps, batch_size=args.batch, sampler=args.sampler),
        args.device,
    )
    seconds = _timed_once(
        lambda: gen.sample(args.images, seed=0, steps=args.steps, batch_size=args.batch, sampler=args.sampler),
        args.device,
    )
    return {
        "name": f"ours DDIM.sample ({args.sampler}, {args.steps} steps)",
        "params": gen.parameter_count(),
        "flops": flops * args.steps,
        "images_per_s": args.images / seconds,
        "seconds": seconds,
        "first_batch_s": warm,
    }


def bench_diffusers(args) -> dict:
    from diffusers import DDIMPipeline, DDIMScheduler

    config = our_config(args)
    torch.manual_seed(0)
    on_cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if on_cuda else torch.float32
    unet = diffusers_unet(config).to(args.device, dtype=dtype).eval()
    r, c = args.resolution, args.channels
    x = torch.randn(2, c, r, r, device=args.device, dtype=dtype)
    with torch.no_grad():
        flops = flops_per_image(lambda: unet(x, torch.tensor([10, 500], device=args.device)).sample, backward=False)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    pipe = DDIMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)

    def run(n: int, seed: int) -> None:
        generator = torch.Generator(args.device).manual_seed(seed)
        for _ in range(n // args.batch):
            pipe(batch_size=args.batch, generator=generator, num_inference_steps=args.steps, eta=0.0, output_type="np")

    warm = _timed_once(lambda: run(args.batch, 1), args.device)
    seconds = _timed_once(lambda: run(args.images, 0), args.device)
    return {
        "name": f"diffusers DDIMPipeline ({args.steps} steps, {str(dtype).replace('torch.', '')})",
        "params": sum(p.numel() for p in unet.parameters()),
        "flops": flops * args.steps,
        "images_per_s": args.images / seconds,
        "seconds": seconds,
        "first_batch_s": warm,
    }


def bench_dcgan(args) -> dict | None:
    try:
        cls = registry.get("dcgan")
    except (KeyError, ImportError):
        return None
    config = cls.default_config(
        resolution=args.dcgan_resolution, channels=3, preset="quick", image_count=500, device=args.device
    )
    gen = cls(config, device=args.device)
    net = gen.netG if hasattr(gen, "netG") else None
    flops = 0.0
    if net is not None:
        z = torch.randn(2, config["nz"], 1, 1, device=args.device)
        with torch.no_grad(), gen._autocast():
            flops = flops_per_image(lambda: net(z), backward=False)
    warm = _timed_once(lambda: gen.sample(args.dcgan_batch, seed=1, batch_size=args.dcgan_batch), args.device)
    seconds = _timed_once(lambda: gen.sample(args.dcgan_images, seed=0, batch_size=args.dcgan_batch), args.device)
    params = sum(p.numel() for p in net.parameters()) if net is not None else None
    return {
        "name": f"DCGAN.sample {args.dcgan_images:,} x {args.dcgan_resolution} px (batch {args.dcgan_batch})",
        "params": params,
        "flops": flops,
        "images_per_s": args.dcgan_images / seconds,
        "seconds": seconds,
        "first_batch_s": warm,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.set_defaults(batch=500)
    parser.add_argument("--images", type=int, default=2000, help="images per DDIM side (a multiple of --batch)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--sampler", default="ddim", help="our sampler for the untrained-model rows: ddim or dpmpp2m")
    parser.add_argument("--dcgan-images", type=int, default=50_000)
    parser.add_argument("--dcgan-resolution", type=int, default=64)
    parser.add_argument("--dcgan-batch", type=int, default=10_000)
    parser.add_argument("--no-dcgan", action="store_true")
    parser.add_argument("--no-ddim", action="store_true", help="only the DCGAN row")
    trained = parser.add_argument_group("a trained model: samplers' speed and held-out quality")
    trained.add_argument("--model", type=Path, default=None, help="a saved DDIM folder (weights + config)")
    trained.add_argument(
        "--rows",
        default=None,
        help="rows to measure (see above); default: our default "
        "sampler and steps (app precision and fp32), our DDIM 50 steps (fp32, the old default, "
        "and app precision), DDIMPipeline 50 steps with our U-Net (as is and clipped) and with a "
        "UNet2DModel of the same size (fp32 and bf16)",
    )
    trained.add_argument("--train-images", type=Path, default=None, help="the folder the model trained on")
    trained.add_argument("--train-limit", type=int, default=150, help="it trained on the first N images (sorted)")
    trained.add_argument("--heldout", type=Path, default=None, help="real images it never saw (KID, copies)")
    trained.add_argument(
        "--negatives",
        type=Path,
        default=None,
        help="a folder of class folders: the other classes train the KID feature net (left out: rotation features)",
    )
    trained.add_argument("--quality-images", type=int, default=500, help="images per row and seed for KID")
    trained.add_argument("--quality-seeds", default="0,1", help="sampling seeds (KID: mean and spread over them)")
    trained.add_argument("--feature-seeds", default="0,1,2", help="KID feature nets (averaged)")
    trained.add_argument("--speed-images", type=int, default=250, help="images timed for speed-only rows")
    trained.add_argument("--samples-dir", type=Path, default=None, help="keep each row's images and a grid here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        return trained_model_table(args)
    if args.images % args.batch:
        parser.error("--images must be a multiple of --batch")

    rows = []
    if not args.no_ddim:
        rows.append(bench_ours(args))
        if not args.no_diffusers:
            rows.append(bench_diffusers(args))
    dcgan = None if args.no_dcgan else bench_dcgan(args)
    if dcgan:
        rows.append(dcgan)
    peak = peak_tflops(args.device)
    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    )
    for row in rows:
        row["gflops_per_image"] = row["flops"] / 1e9
    what = (
        "DCGAN only"
        if args.no_ddim
        else (
            f"DDIM {args.resolution} px x {args.channels} ch, batch {args.batch}, {args.images} images, "
            f"model '{args.preset}'"
        )
    )
    print_rows(
        f"Sampling: {device_name}, {what}, torch {torch.__version__}",
        rows,
        peak,
        [
            ("implementation", "name"),
            ("params", "params"),
            ("GFLOP/img", "gflops_per_image"),
            ("seconds", "seconds"),
            ("images/s", "images_per_s"),
        ],
    )
    if not args.no_ddim and not args.no_diffusers:
        print(f"speed-up ours / DDIMPipeline: {rows[0]['images_per_s'] / rows[1]['images_per_s']:.2f}x")
    if dcgan:
        print(f"DCGAN: {args.dcgan_images:,} images in {dcgan['seconds']:.3f} s (target < 2 s on one H100)")
    result = {"device": device_name, "peak_tflops": peak, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


# ----------------------------------------------------------------------------- a trained model


def _parse_rows(text: str) -> list[dict]:
    rows = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        if parts[0] == "ours" and len(parts) in (3, 4):
            rows.append(
                {
                    "kind": "ours",
                    "sampler": parts[1],
                    "steps": int(parts[2]),
                    "precision": parts[3] if len(parts) == 4 else "auto",
                }
            )
        elif parts[0] == "pipeline" and len(parts) in (2, 3) and parts[2:] in ([], ["clipped"]):
            rows.append(
                {
                    "kind": "pipeline",
                    "sampler": "ddim",
                    "steps": int(parts[1]),
                    "precision": "fp32",
                    "clipped": parts[2:] == ["clipped"],
                }
            )
        elif parts[0] == "diffusers-unet" and len(parts) in (2, 3):
            rows.append(
                {
                    "kind": parts[0],
                    "sampler": "ddim",
                    "steps": int(parts[1]),
                    "precision": parts[2] if len(parts) == 3 else "fp32",
                    "clipped": False,
                }
            )
        else:
            raise SystemExit(
                f"bad row {item!r}: use ours:SAMPLER:STEPS[:PRECISION], pipeline:STEPS[:clipped] "
                "or diffusers-unet:STEPS[:PRECISION]"
            )
    return rows


def _ddim_scheduler(model: DDIM):
    """diffusers' DDIMScheduler on exactly our noise schedule (betas from our alpha bar), v-prediction."""
    from diffusers import DDIMScheduler

    alpha_bar = model.schedule.alpha_bar
    betas = 1 - alpha_bar / torch.cat([torch.ones(1, dtype=alpha_bar.dtype), alpha_bar[:-1]])
    return DDIMScheduler(
        num_train_timesteps=model.schedule.timesteps,
        trained_betas=betas.tolist(),
        prediction_type="v_prediction" if model.config["objective"] == "v" else "epsilon",
        clip_sample=True,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
    )


def _pipeline_with_our_unet(model: DDIM):
    """DDIMPipeline whose U-Net call runs our trained EMA network (a UNet2DModel carries the config)."""
    from diffusers import DDIMPipeline, UNet2DModel
    from diffusers.models.unets.unet_2d import UNet2DOutput

    c, r = model.config["channels"], model.config["resolution"]
    carrier = UNet2DModel(
        sample_size=r,
        in_channels=c,
        out_channels=c,
        block_out_channels=(8,),
        down_block_types=("DownBlock2D",),
        up_block_types=("UpBlock2D",),
        layers_per_block=1,
        norm_num_groups=8,
    ).eval()
    net = model.ema.model.eval()

    def forward(sample, timestep, *args, **kwargs):
        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        return UNet2DOutput(sample=net(sample, t))

    carrier.forward = forward
    pipe = DDIMPipeline(unet=carrier, scheduler=_ddim_scheduler(model))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipeline_with_diffusers_unet(model: DDIM, precision: str):
    """DDIMPipeline with a UNet2DModel of our trained U-Net's size (random weights), for speed only."""
    from diffusers import DDIMPipeline

    config = dict(model.config)
    patch = config.get("patch_size", 1)
    config.update(
        resolution=config["resolution"] // patch,
        channels=config["channels"] * patch**2,
        groups=24 if config["base_channels"] % 32 else 32,
    )
    torch.manual_seed(0)
    unet = diffusers_unet(config).eval()
    if precision == "bf16":
        unet = unet.to(torch.bfloat16)
    pipe = DDIMPipeline(unet=unet, scheduler=_ddim_scheduler(model))
    pipe.set_progress_bar_config(disable=True)
    return pipe, sum(p.numel() for p in unet.parameters())


def _run_pipeline(
    pipe, n: int, steps: int, seed: int, batch: int, channels: int, patch: int, clipped: bool = False
) -> torch.Tensor:
    """``n`` images as uint8 [n, C, H, W] on the CPU (patched outputs unfolded back to pixels).

    ``clipped``: ``use_clipped_model_output=True`` (the noise estimate recomputed from the clipped
    ``x0``, as ours does); diffusers' default keeps the unclipped one.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    out = []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        images = pipe(
            batch_size=b,
            generator=generator,
            num_inference_steps=steps,
            eta=0.0,
            output_type="pt",
            use_clipped_model_output=clipped or None,
        ).images
        images = images.float()
        if patch > 1:
            images = torch.nn.functional.pixel_shuffle(images, patch)
        out.append((images * 255).round().clamp(0, 255).to(torch.uint8)[:, :channels])
    return torch.cat(out)


def _nearest_distance(images: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Each image's RMS pixel distance (0-1 scale) to its nearest training image."""
    a, b = images.flatten(1).float() / 255, train.flatten(1).float() / 255
    return torch.cdist(a, b).min(dim=1).values / a.shape[1] ** 0.5


def _row_name(row: dict, model: DDIM) -> str:
    if row["kind"] == "ours":
        label = {"dpmpp2m": "DPM-Solver++(2M)", "ddim": "DDIM"}.get(row["sampler"], row["sampler"])
        return f"ours {label}"
    if row["kind"] == "pipeline":
        return "diffusers DDIMPipeline, our trained U-Net" + (" (clipped eps)" if row["clipped"] else "")
    return "diffusers DDIMPipeline, UNet2DModel same size"


def _precision_used(row: dict, model: DDIM) -> str:
    from apps.ml.engine.device import cpu_has_bf16

    if row["kind"] != "ours" or row["precision"] != "auto":
        return row["precision"]
    return "bf16" if model.device.type == "cpu" and cpu_has_bf16() else "fp32"


def trained_model_table(args) -> dict:
    """Each row's images/s, held-out KID and near-copy share, from one trained model."""
    from quick_preset import load_folder

    from apps.ml.engine.images import save_grid, to_uint8
    from apps.ml.quality import metrics
    from apps.ml.quality.classifier import ClassifierSettings

    model = DDIM.load(args.model, device=args.device)
    c, r = model.config["channels"], model.config["resolution"]
    patch = model.config.get("patch_size", 1)
    rows = _parse_rows(
        args.rows
        or ",".join(
            [
                f"ours:{DDIM.default_sampler}:{DDIM.default_sampling_steps}",
                f"ours:{DDIM.default_sampler}:{DDIM.default_sampling_steps}:fp32",
                "ours:ddim:50:fp32",
                "ours:ddim:50",
                "pipeline:50",
                "pipeline:50:clipped",
                "diffusers-unet:50",
                "diffusers-unet:50:bf16",
            ]
        )
    )
    quality = args.heldout is not None and args.train_images is not None
    seeds = [int(s) for s in args.quality_seeds.split(",")]

    train = heldout = unused = None
    nets = []
    if quality:
        everything = to_uint8(load_folder(args.train_images, r, args.train_limit * 2))
        train, unused = everything[: args.train_limit], everything[args.train_limit :]
        heldout = to_uint8(load_folder(args.heldout, r))
        negatives = []
        if args.negatives:
            own = args.train_images.resolve()
            for folder in sorted(p for p in args.negatives.iterdir() if p.is_dir() and p.resolve() != own):
                negatives.append(to_uint8(load_folder(folder, r, args.train_limit)))
        for seed in (int(s) for s in args.feature_seeds.split(",")):
            nets.append(metrics.train_feature_net(train, negatives, seed=seed, settings=ClassifierSettings()))
        held_features = [net(heldout) for net in nets]
        threshold = torch.quantile(_nearest_distance(heldout, train), 0.01).item()

    def kid(images: torch.Tensor) -> float:
        return sum(metrics.kernel_distance(f, net(images), seed=0) for f, net in zip(held_features, nets)) / len(nets)

    results = []
    if quality and len(unused) >= 2:
        results.append(
            {
                "name": f"real: {len(unused)} unused training images",
                "precision": "-",
                "steps": None,
                "images_per_s": None,
                "kid": [kid(unused)],
                "copies": None,
            }
        )
    params = {"ours": model.parameter_count()}
    for row in rows:
        name = _row_name(row, model)
        precision = _precision_used(row, model)
        if row["kind"] == "ours":
            model.config["cpu_sampling_bf16"] = row["precision"] != "fp32"

            def generate(n, seed, row=row):
                return model.sample(n, seed=seed, steps=row["steps"], sampler=row["sampler"], batch_size=args.batch)
        else:
            if row["kind"] == "pipeline":
                pipe, p = _pipeline_with_our_unet(model), 1
            else:
                pipe, params["diffusers"] = _pipeline_with_diffusers_unet(model, row["precision"])
                p = patch

            def generate(n, seed, row=row, pipe=pipe, p=p):
                return _run_pipeline(pipe, n, row["steps"], seed, args.batch, c, p, row["clipped"])

        generate(min(8, args.batch), 12345)  # warm-up: one-time kernel set-up stays out of the timing
        speed_only = row["kind"] == "diffusers-unet" or not quality
        runs = [args.speed_images] if speed_only else [args.quality_images] * len(seeds)
        seconds, kids, copies, kept = 0.0, [], [], []
        for n, seed in zip(runs, seeds if not speed_only else [0]):
            start = time.perf_counter()
            images = generate(n, seed)
            seconds += time.perf_counter() - start
            if not speed_only:
                kids.append(kid(images))
                copies.append((_nearest_distance(images, train) < threshold).float().mean().item())
                kept.append(images)
        result = {
            "name": name,
            "precision": precision,
            "steps": row["steps"],
            "images_per_s": sum(runs) / seconds,
            "kid": kids or None,
            "copies": sum(copies) / len(copies) if copies else None,
        }
        results.append(result)
        print(
            f"{name} {row['steps']} steps {precision}: {result['images_per_s']:.2f} images/s"
            + (f", KID x1e3 {[round(k * 1e3, 2) for k in kids]}" if kids else ""),
            file=sys.stderr,
            flush=True,
        )
        if args.samples_dir and kept:
            args.samples_dir.mkdir(parents=True, exist_ok=True)
            tag = f"{row['kind']}_{row['sampler']}_{row['steps']}_{precision}"
            tag += "_clipped" if row.get("clipped") else ""
            save_grid(kept[0][:64], args.samples_dir / f"{tag}.png", columns=8)

    reference = next(
        (
            x
            for x in results
            if x["name"].startswith("diffusers DDIMPipeline")
            and x["steps"] == 50
            and x["precision"] == "fp32"
            and "UNet2DModel" in x["name"]
        ),
        None,
    )
    reference = reference or next((x for x in results if x["name"].startswith("diffusers")), None)
    device_name = f"cpu ({torch.get_num_threads()} threads)" if args.device == "cpu" else torch.cuda.get_device_name()
    print(
        f"\nSamplers from one trained model: {args.model} ({r} px x {c} ch, {params['ours']:,} parameters"
        + (f"; UNet2DModel {params['diffusers']:,}" if "diffusers" in params else "")
        + f"), {device_name}, batch {args.batch}, torch {torch.__version__}"
    )
    if quality:
        print(
            f"KID x 1e3 against {len(heldout)} held-out images (features of {len(nets)} small CNNs trained on the "
            f"{len(train)} training images{' and the other classes' if args.negatives else ' (rotations)'}), "
            f"mean +- spread over {len(seeds)} x {args.quality_images} images; near-copies: RMS pixel distance "
            "to the "
            "nearest training image below the 1 % quantile of the held-out images' distances"
        )
    table = [["implementation", "precision", "steps", "images/s", "x DDIMPipeline", "KID x1e3", "near-copies"]]
    for x in results:
        kid_text = "-"
        if x["kid"]:
            values = [k * 1e3 for k in x["kid"]]
            mean = sum(values) / len(values)
            kid_text = f"{mean:.2f}" + (f" +- {(max(values) - min(values)) / 2:.2f}" if len(values) > 1 else "")
        speed = x["images_per_s"]
        table.append(
            [
                x["name"],
                x["precision"],
                "-" if x["steps"] is None else str(x["steps"]),
                "-" if speed is None else f"{speed:.2f}",
                f"{speed / reference['images_per_s']:.2f}x" if speed and reference else "-",
                kid_text,
                "-" if x["copies"] is None else f"{x['copies']:.1%}",
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))
    result = {"device": device_name, "rows": results}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
