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

from apps.generators.ml import registry  # noqa: E402
from apps.generators.ml.ddim import DDIM  # noqa: E402
from train import add_common_arguments, diffusers_unet, flops_per_image, our_config, peak_tflops, print_rows, sync  # noqa: E402


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
        flops = flops_per_image(lambda: gen.ema.model(x, torch.tensor([10.0, 500.0], device=args.device)),
                                backward=False)
    warm = _timed_once(lambda: gen.sample(args.batch, seed=1, steps=args.steps, batch_size=args.batch), args.device)
    seconds = _timed_once(lambda: gen.sample(args.images, seed=0, steps=args.steps, batch_size=args.batch), args.device)
    return {"name": f"ours DDIM.sample ({args.steps} steps)", "params": gen.parameter_count(),
            "flops": flops * args.steps, "images_per_s": args.images / seconds, "seconds": seconds,
            "first_batch_s": warm}


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
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    pipe = DDIMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)

    def run(n: int, seed: int) -> None:
        generator = torch.Generator(args.device).manual_seed(seed)
        for _ in range(n // args.batch):
            pipe(batch_size=args.batch, generator=generator, num_inference_steps=args.steps, eta=0.0, output_type="np")

    warm = _timed_once(lambda: run(args.batch, 1), args.device)
    seconds = _timed_once(lambda: run(args.images, 0), args.device)
    return {"name": f"diffusers DDIMPipeline ({args.steps} steps, {str(dtype).replace('torch.', '')})",
            "params": sum(p.numel() for p in unet.parameters()), "flops": flops * args.steps,
            "images_per_s": args.images / seconds, "seconds": seconds, "first_batch_s": warm}


def bench_dcgan(args) -> dict | None:
    try:
        cls = registry.get("dcgan")
    except (KeyError, ImportError):
        return None
    config = cls.default_config(resolution=args.dcgan_resolution, channels=3, preset="quick", image_count=500,
                                device=args.device)
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
    return {"name": f"DCGAN.sample {args.dcgan_images:,} x {args.dcgan_resolution} px (batch {args.dcgan_batch})",
            "params": params, "flops": flops, "images_per_s": args.dcgan_images / seconds, "seconds": seconds,
            "first_batch_s": warm}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.set_defaults(batch=500)
    parser.add_argument("--images", type=int, default=2000, help="images per DDIM side (a multiple of --batch)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--dcgan-images", type=int, default=50_000)
    parser.add_argument("--dcgan-resolution", type=int, default=64)
    parser.add_argument("--dcgan-batch", type=int, default=10_000)
    parser.add_argument("--no-dcgan", action="store_true")
    parser.add_argument("--no-ddim", action="store_true", help="only the DCGAN row")
    args = parser.parse_args(argv)
    if args.images % args.batch:
        parser.error("--images must be a multiple of --batch")
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    if not args.no_ddim:
        rows.append(bench_ours(args))
        if not args.no_diffusers:
            rows.append(bench_diffusers(args))
    dcgan = None if args.no_dcgan else bench_dcgan(args)
    if dcgan:
        rows.append(dcgan)
    peak = peak_tflops(args.device)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    for row in rows:
        row["gflops_per_image"] = row["flops"] / 1e9
    what = "DCGAN only" if args.no_ddim else (
        f"DDIM {args.resolution} px x {args.channels} ch, batch {args.batch}, {args.images} images, model '{args.preset}'")
    print_rows(
        f"Sampling: {device_name}, {what}, torch {torch.__version__}",
        rows, peak,
        [("implementation", "name"), ("params", "params"), ("GFLOP/img", "gflops_per_image"),
         ("seconds", "seconds"), ("images/s", "images_per_s")],
    )
    if not args.no_ddim and not args.no_diffusers:
        print(f"speed-up ours / DDIMPipeline: {rows[0]['images_per_s'] / rows[1]['images_per_s']:.2f}x")
    if dcgan:
        print(f"DCGAN: {args.dcgan_images:,} images in {dcgan['seconds']:.3f} s (target < 2 s on one H100)")
    result = {"device": device_name, "peak_tflops": peak, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
