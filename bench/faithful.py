"""Faithful images (#18): does our augmentation leak into what we generate? (no Django)

One arm = one generator trained on the first ``--count`` photos of a Fashion-MNIST class (default
150 sandals, 32 px), the way the app trains it, then ``--samples`` images generated with the
generation defaults and scored against ``../shared/datasets/fashion-mnist/more/<class>`` (2,000
photos nobody trained on). ``--policy``:

- ``before``: the code as it was before #18 - offline augmented copies with mirror images, plain
  flips of half of every DDIM batch (``hflip``), no conditioned augmentation, U-Net version 1;
- ``after``:  the product now - the photos' orientation measured (:mod:`apps.ml.engine.orientation`),
  offline copies and the recipe adapted to it (:meth:`TrainingConfig.for_photos`), the preset's
  conditioned augmentation and U-Net version.

``--augment`` (default on, the wizard's default) adds the offline augmented copies as the app's
augment stage does. ``--set key=value`` changes the config (e.g. ``min_snr_gamma=null``).

Measured per arm, each next to the same number measured on *new real photos* in the same run
(500 of ``more``, the reference):

- ``other way``: share closer to the class's mirrored mean image than to its mean (means of the
  2,000 ``more`` photos); real photos and the 150 training photos as references;
- the quality report's realism ``precision`` and ``coverage`` (500 images against 500 fresh
  photos), the finest-level SWD (x1000) and the verdict, and flip-aware near-copies;
- background: pixel positions where >= 90 % of the real photos are black (<= 2/255); per image the
  mean of those pixels (/255, mean +- std over images), and the share of pure-black pixels;
- DDIM only: the held-out denoising error by timestep (x0 RMS in /255 on 500 ``more`` photos,
  over the whole image and over the background).

Each arm writes ``<out>/<arm>/result.json``, its samples and a grid; ``--table`` prints every
arm of ``--out`` side by side. Example (about 15 CPU-minutes per DDIM arm at one thread):

    .venv/bin/python bench/faithful.py --arm ddim-before --policy before --threads 1
    .venv/bin/python bench/faithful.py --arm ddim-after --policy after --threads 1
    .venv/bin/python bench/faithful.py --table
    python bench/faithful.py --device cuda --arm ddim-cuda-quick --data DIR   # the GPU recipe (bench/README.md)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `apps`

from apps.ml.engine import orientation as orientation_module  # noqa: E402
from apps.ml.engine import registry
from apps.ml.engine.augment import augment_dataset, augmentation_copies  # noqa: E402
from apps.ml.engine.checkpoint import load_tensors, save_tensors_atomic  # noqa: E402
from apps.ml.engine.config import build_config  # noqa: E402
from apps.ml.engine.images import save_grid  # noqa: E402
from apps.ml.quality.report import quality_report  # noqa: E402
from bench.quick_preset import load_folder, parse_overrides  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist"
OUT = Path(__file__).resolve().parent / "out" / "faithful"
BLACK = 2  # uint8 values at or below this count as black
TIMESTEPS = (5, 20, 50, 100, 250, 500, 750)
APP_HELDOUT = 22  # the app's held-out photos for 150 (apps.ml.quality.heldout.holdout_count)


def uint8(images: torch.Tensor) -> torch.Tensor:
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def other_way_share(images: torch.Tensor, mean: torch.Tensor) -> float:
    """Share of uint8 ``images`` closer to the mirrored ``mean`` (float [0, 1]) than to ``mean``."""
    x = images.float().div(255).flatten(1)
    to_mean = (x - mean.flatten()).pow(2).sum(1)
    to_mirror = (x - mean.flip(-1).flatten()).pow(2).sum(1)
    return float((to_mirror < to_mean).float().mean())


def background(images: torch.Tensor, mask: torch.Tensor) -> dict:
    """Mean of the background pixels per image (/255: mean, std over images) and the pure-black share."""
    per_image = images.float()[:, :, mask].mean(dim=(1, 2))
    return {
        "mean": round(float(per_image.mean()), 3),
        "std": round(float(per_image.std()), 3),
        "black_share": round(float((images == 0).float().mean()), 4),
    }


@torch.no_grad()
def denoising_error(model, photos: torch.Tensor, mask: torch.Tensor, seed: int = 0) -> dict:
    """x0 RMS error (/255) of the EMA network on ``photos`` (uint8) at each of :data:`TIMESTEPS`."""
    x0 = photos.float() / 127.5 - 1.0
    net = model.ema.model.eval()
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for t_value in TIMESTEPS:
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.full((len(x0),), t_value, dtype=torch.long)
        alpha_bar = model.schedule.alpha_bar_on("cpu")[t].view(-1, 1, 1, 1)
        x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
        errors = []
        for start in range(0, len(x0), 100):
            part = slice(start, start + 100)
            pred = net(x_t[part].to(device), t[part].float().to(device)).float().cpu()
            if model.config.objective == "v":
                pred = alpha_bar[part].sqrt() * x_t[part] - (1 - alpha_bar[part]).sqrt() * pred
            else:
                pred = (x_t[part] - (1 - alpha_bar[part]).sqrt() * pred) / alpha_bar[part].sqrt()
            errors.append((pred.clamp(-1, 1) - x0[part]) * 127.5)
        err = torch.cat(errors)
        out[str(t_value)] = {
            "all": round(float(err.pow(2).mean().sqrt()), 2),
            "background": round(float(err[:, :, mask].pow(2).mean().sqrt()), 2),
        }
    return out


def train(
    kind: str,
    policy: str,
    photos: torch.Tensor,
    found: dict,
    *,
    preset: str,
    seed: int,
    augment: bool,
    overrides: dict,
    directory: Path,
    resample: bool = False,
    device: str = "cpu",
):
    """Train like the app (augment stage, then the config it builds for ``device``: on "cuda" the GPU recipe);
    returns (model, augmented, config, s)."""
    generator_type = registry.get(kind)
    training = photos
    if augment:
        mirror = True if policy == "before" else found["mirrors"]
        turns = False if policy == "before" else found["rotations"]
        training = augment_dataset(
            photos, augmentation_copies(len(photos)), seed=seed, mirror=mirror, quarter_turns=turns, resample=resample
        )
    config = build_config(
        generator_type,
        resolution=photos.shape[-1],
        channels=photos.shape[1],
        preset=preset,
        image_count=len(photos),
        device=device,
        orientation=None if policy == "before" else found,
    )
    if policy == "before" and kind == "ddim":  # the recipe before #18
        config.update(hflip=True, augment_p=0.0, architecture_version=1)
    config.update(seed=seed, **overrides)
    model = generator_type(config, device=device)
    started = time.process_time()

    def report(p) -> None:
        if p.step % 250 == 0 or p.step == p.total_steps:
            losses = " ".join(f"{k}={v:.3f}" for k, v in p.losses.items())
            print(f"  step {p.step}/{p.total_steps} {losses} cpu={time.process_time() - started:.0f}s", flush=True)

    model.train(training.float() / 127.5 - 1.0, checkpoint_dir=directory / "checkpoints", on_progress=report)
    model.save(directory / "model")
    return model, (training if augment else None), config, time.process_time() - started


def _resample(args) -> bool:
    """Whether the augment stage's copies are resampled (a small rotation and a crop, bilinear): the recipe before
    the exact copies; ``--policy before`` implies it unless ``--resample``/``--no-resample`` says."""
    return args.policy == "before" if args.resample is None else args.resample


def run_arm(args) -> None:
    directory = args.out / args.arm
    directory.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    photos = uint8(load_folder(args.data / "train" / args.cls, args.resolution, limit=args.count))
    fresh = uint8(load_folder(args.data / "more" / args.cls, args.resolution))
    found = orientation_module.measure(photos).as_dict()
    print(f"[{args.arm}] {len(photos)} photos, {len(fresh)} new; orientation {found}", flush=True)
    if args.rescore:  # score the kept samples again (the model and the timings of the first run stay)
        earlier = json.loads((directory / "result.json").read_text())
        generated = load_tensors(directory / "samples.safetensors")["images"]
        augmented = None
        resample = earlier.get("resample", True)  # arms scored before exact copies existed were resampled
        if earlier["augment"]:
            mirror = True if earlier["policy"] == "before" else found["mirrors"]
            turns = False if earlier["policy"] == "before" else found["rotations"]
            augmented = augment_dataset(
                photos,
                augmentation_copies(len(photos)),
                seed=earlier["seed"],
                mirror=mirror,
                quarter_turns=turns,
                resample=resample,
            )
        model, config, cpu_s, sample_s = (
            None,
            {"total_steps": earlier["steps"]},
            earlier["train_cpu_s"],
            earlier["sample_cpu_s"],
        )
    else:
        resample = _resample(args)
        model, augmented, config, cpu_s = train(
            args.kind,
            args.policy,
            photos,
            found,
            preset=args.preset,
            seed=args.seed,
            augment=args.augment,
            overrides=parse_overrides(args.set),
            directory=directory,
            resample=resample,
            device=args.device,
        )
        started = time.process_time()
        generated = model.sample(args.samples, seed=args.seed + 1000)
        sample_s = time.process_time() - started
        save_tensors_atomic({"images": generated.contiguous()}, directory / "samples.safetensors")
        save_grid(generated[:64], directory / "samples.png", columns=8)

    mean = fresh.float().div(255).mean(0)
    mask = ((fresh <= BLACK).float().mean(0) >= 0.9)[0]  # [H, W]
    heldout, new_photos = fresh[:500], fresh[500:1000]
    report = quality_report(
        generated=generated,
        train=photos,
        heldout=heldout,
        augmented=augmented,
        measure_usefulness=False,
        seeds=(args.seed,),
    )
    # The app's own verdict: its report holds back 15 % of 150 photos (22), so its references are measured
    # at 22 images, where the SWD and precision of new photos are noisier and less strict than at 500.
    app = quality_report(
        generated=generated,
        train=photos,
        heldout=fresh[1000 : 1000 + APP_HELDOUT],
        augmented=augmented,
        measure_usefulness=False,
        seeds=(args.seed,),
    )
    result = {
        "arm": args.arm,
        "kind": args.kind,
        "policy": args.policy,
        "preset": args.preset,
        "seed": args.seed,
        "device": args.device,
        "augment": args.augment,
        "resample": resample,
        "overrides": parse_overrides(args.set),
        "orientation": found,
        "train_cpu_s": round(cpu_s),
        "sample_cpu_s": round(sample_s),
        "steps": config["total_steps"],
        "other_way": {
            "generated": other_way_share(generated, mean),
            "new_photos": other_way_share(new_photos, mean),
            "train": other_way_share(photos, mean),
        },
        "precision": report["precision"],
        "coverage": report["coverage"],
        "swd": report["swd"],
        "copy_share": report["copy_share"]["value"],
        "verdict": report["verdict"],
        "explanation": report["explanation"],
        "app": {
            "verdict": app["verdict"],
            "explanation": app["explanation"],
            "precision": app["precision"],
            "swd": app["swd"],
        },
        "background": {
            "generated": background(generated, mask),
            "new_photos": background(new_photos, mask),
            "pixels": int(mask.sum()),
        },
    }
    if args.rescore:
        result["denoising_error"] = earlier.get("denoising_error")
    elif args.kind == "ddim":
        result["denoising_error"] = denoising_error(model, heldout, mask, seed=args.seed)
    (directory / "result.json").write_text(json.dumps(result, indent=1))
    print_table([result])


def _ratio(metric: dict, level: bool = False) -> str:
    value = metric["levels"][0] if level else metric["value"]
    reference = metric["reference_levels"][0] if level else metric["reference"]
    if value is None or not reference:
        return "-"
    return f"{value:.3g} / {reference:.3g} = {value / reference:.2f}x"


def print_table(results: list[dict]) -> None:
    header = [
        "arm",
        "steps",
        "train CPU-s",
        "other way (new photos, train)",
        "precision (new)",
        "coverage (new)",
        "finest SWD (new)",
        "copies",
        "background mean+-std /255 (new)",
        "black px (new)",
        "verdict at 500 new",
        "app's verdict (22 held out; precision, finest SWD)",
    ]
    rows = []
    for r in results:
        ow, bg = r["other_way"], r["background"]
        rows.append(
            [
                r["arm"],
                str(r["steps"]),
                str(r["train_cpu_s"]),
                f"{ow['generated']:.1%} ({ow['new_photos']:.1%}, {ow['train']:.1%})",
                _ratio(r["precision"]),
                _ratio(r["coverage"]),
                _ratio(r["swd"], level=True),
                f"{r['copy_share']:.1%}",
                f"{bg['generated']['mean']:.2f}+-{bg['generated']['std']:.2f} "
                f"({bg['new_photos']['mean']:.2f}+-{bg['new_photos']['std']:.2f})",
                f"{bg['generated']['black_share']:.0%} ({bg['new_photos']['black_share']:.0%})",
                r["verdict"],
                f"{r['app']['verdict']} ({_ratio(r['app']['precision']).split('= ')[-1]}, "
                f"{_ratio(r['app']['swd'], level=True).split('= ')[-1]})"
                if r.get("app")
                else "-",
            ]
        )
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    with_error = [r for r in results if r.get("denoising_error")]
    if with_error:
        print("\nHeld-out denoising error, x0 RMS /255 (whole image / background), by timestep:")
        print("| arm | " + " | ".join(f"t={t}" for t in TIMESTEPS) + " |")
        print("|" + " --- |" * (len(TIMESTEPS) + 1))
        for r in with_error:
            cells = [
                f"{r['denoising_error'][str(t)]['all']:.1f} / {r['denoising_error'][str(t)]['background']:.1f}"
                for t in TIMESTEPS
            ]
            print(f"| {r['arm']} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arm", help="the arm's name (its folder under --out)")
    parser.add_argument("--kind", default="ddim", choices=("ddim", "dcgan"))
    parser.add_argument("--policy", default="after", choices=("before", "after"))
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--cls", default="sandal", help="the Fashion-MNIST class")
    parser.add_argument("--data", type=Path, default=DATA, help="holds train/<cls> and more/<cls>")
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--resample",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the augment stage's copies resampled (small rotation and crop, bilinear) as before "
        "(default: only with --policy before)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--device", default="cpu", help="train and sample here (cuda: the GPU recipe the app builds there)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table", action="store_true", help="print every arm's result of --out")
    parser.add_argument("--rescore", action="store_true", help="score the arm's kept samples again (no training)")
    args = parser.parse_args(argv)
    if args.table:
        results = [json.loads(p.read_text()) for p in sorted(args.out.glob("*/result.json"))]
        if not results:
            raise SystemExit(f"no results under {args.out}")
        print_table(results)
        return
    if not args.arm:
        parser.error("--arm is required (or --table)")
    run_arm(args)


if __name__ == "__main__":
    main()
