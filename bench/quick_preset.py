"""Train one generator type on a folder of images with a preset and time it (no Django).

Example:
    .venv/bin/python bench/quick_preset.py --kind dcgan \\
        --data ../shared/datasets/fashion-mnist/train/sandal --limit 500 \\
        --resolution 64 --preset quick --out /tmp/bench-dcgan --seed 0

Writes ``OUT/final_grid.png`` (64 samples), ``OUT/samples/NNNN.png`` (the same
64 images one by one), ``OUT/model/`` (weights + config) and the run's
checkpoints and per-checkpoint grids under ``OUT/checkpoints/``; prints a
table with the timing, final losses and warnings.

``--holdout F --report N`` (any folder, e.g. one emoji category): F of the
images (shuffled with the seed) are kept out of training; after training, N
images are generated and checked as the quality report does it: the share
whose nearest training image is closer than held-out real images ever are
(the 1 % quantile of their distances), the variety relative to the training
images, and the share the filter calls noise or blank. ``OUT/closest_pairs.png``
shows the 8 closest (generated | training) pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `apps`

from apps.ml.engine import registry  # noqa: E402
from apps.ml.engine.augment import augment_dataset  # noqa: E402
from apps.ml.engine.device import pick_device  # noqa: E402
from apps.ml.engine.images import save_grid, to_pil, to_uint8  # noqa: E402
from apps.ml.quality.diversity import mean_pairwise_distance  # noqa: E402
from apps.ml.quality.images import split  # noqa: E402
from apps.ml.quality.report import quality_report  # noqa: E402

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def load_folder(folder: Path, resolution: int, limit: int | None = None) -> torch.Tensor:
    """The images of ``folder`` (sorted by name, the first ``limit``) as float [N,C,R,R] in [-1, 1].

    Transparency is composited onto white; EXIF orientation is applied; each
    image is centre-cropped to a square and resized to ``resolution``. C is 1
    when every image is grey (R = G = B everywhere), else 3.
    """
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise SystemExit(f"no images in {folder}")
    tensors = []
    for path in paths:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGBA")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img).convert("RGB")
            img = ImageOps.fit(img, (resolution, resolution), method=Image.Resampling.LANCZOS)
            tensors.append(
                torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(resolution, resolution, 3)
            )
    images = torch.stack(tensors).permute(0, 3, 1, 2).contiguous()  # uint8 [N, 3, R, R]
    grey = bool((images[:, :1] == images[:, 1:]).all())
    if grey:
        images = images[:, :1]
    return images.float() / 127.5 - 1.0


def parse_overrides(pairs: list[str]) -> dict:
    """``key=value`` strings -> dict; values are parsed as JSON when they can be (numbers, true, ...)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def report_on_samples(model, train: torch.Tensor, heldout: torch.Tensor, args) -> list[tuple[str, str]]:
    """Generate ``args.report`` images and check them against the training and held-out images."""
    started = time.perf_counter()
    generated = model.sample(args.report, seed=args.seed + 1)  # uint8
    sample_seconds = time.perf_counter() - started
    train_u8, heldout_u8 = to_uint8(train), to_uint8(heldout)
    report = quality_report(generated=generated, train=train_u8, heldout=heldout_u8, measure_usefulness=False)
    pairs = [t for pair in report["worst_copies"] for t in (generated[pair["generated"]], train_u8[pair["train"]])]
    save_grid(torch.stack(pairs), args.out / "closest_pairs.png", columns=4)
    save_grid(generated[:256], args.out / "report_grid.png", columns=16)
    kept = report["delivered"]
    return [
        ("held out", f"{len(heldout)} real images"),
        (f"report on {len(generated)} images", f"sampled in {sample_seconds:.1f} s"),
        (
            "near-copies",
            f"{report['copy_share']['value']:.1%} (distance < {report['copy_share']['threshold']:.4f}, "
            "the 1% quantile of held-out real images' distance to the training set)",
        ),
        ("diversity (report)", f"{report['diversity']['value']:.2f} of the training images' mean pairwise distance"),
        ("noise or blank", f"{report['noise_share']['value']:.1%}"),
        ("SWD (held-out ref)", f"{report['swd']['value']:.0f} ({report['swd']['reference']:.0f})"),
        (
            "KID (held-out ref)",
            f"{report['kid']['value']:.3f} ({report['kid']['reference']:.3f})"
            if report["kid"]["value"] is not None
            else "-",
        ),
        ("verdict", report["verdict"]),
        (
            "after the filter",
            f"{kept['count']} kept"
            + (f", diversity {kept['diversity']['value']:.2f}" if kept["diversity"]["value"] is not None else ""),
        ),
        ("grids", f"{args.out / 'report_grid.png'}, {args.out / 'closest_pairs.png'}"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="dcgan", help="the generator type, e.g. dcgan or ddim")
    parser.add_argument("--data", required=True, type=Path, help="folder of images")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images (sorted by name)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment-copies", type=int, default=0, help="offline augmented copies per image")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--holdout", type=float, default=0.0, help="share of the images kept out of training")
    parser.add_argument(
        "--report",
        type=int,
        default=0,
        metavar="N",
        help="generate N images and report copies and variety against the held-out images",
    )
    args = parser.parse_args(argv)
    if args.report and not args.holdout:
        parser.error("--report needs --holdout (held-out real images calibrate the copy check)")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    images = load_folder(args.data, args.resolution, args.limit)
    heldout = None
    if args.holdout:
        images, heldout = split(images, holdout=args.holdout, seed=args.seed)
    image_count = images.shape[0]
    if args.augment_copies:
        images = augment_dataset(images, args.augment_copies, seed=args.seed)

    generator_type = registry.get(args.kind)
    config = generator_type.default_config(
        resolution=args.resolution,
        channels=images.shape[1],
        preset=args.preset,
        image_count=image_count,
        device=device,
    )
    config["seed"] = args.seed
    config.update(parse_overrides(args.set))
    model = generator_type(config, device=device)

    def on_progress(p) -> None:
        losses = " ".join(f"{k}={v:.3f}" for k, v in p.losses.items())
        extra = f" grid={p.sample_grid}" if p.sample_grid else ""
        print(f"step {p.step}/{p.total_steps} {losses} t={time.perf_counter() - started:.0f}s{extra}", file=sys.stderr)
        for warning in p.warnings:
            print(f"  warning: {warning}", file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = model.train(images, checkpoint_dir=args.out / "checkpoints", on_progress=on_progress)
    train_seconds = time.perf_counter() - started

    samples = model.sample(64, seed=args.seed)
    grid = save_grid(samples, args.out / "final_grid.png", columns=8)
    (args.out / "samples").mkdir(exist_ok=True)
    for i, image in enumerate(samples):
        to_pil(image).save(args.out / "samples" / f"{i:04d}.png")
    model.save(args.out / "model")
    diversity = mean_pairwise_distance(samples) / mean_pairwise_distance(images)
    report_rows = report_on_samples(model, images[:image_count], heldout, args) if args.report else []

    print_table(
        [
            ("kind", args.kind),
            ("device", device),
            (
                "images",
                f"{image_count}" + (f" (+{images.shape[0] - image_count} augmented)" if args.augment_copies else ""),
            ),
            ("resolution", f"{args.resolution} px, {images.shape[1]} channel(s)"),
            ("preset", args.preset),
            ("steps", str(result.steps)),
            ("batch size", str(config.get("batch_size"))),
            (
                "train seconds",
                f"{train_seconds:.1f}"
                + (
                    f" (this call; {result.seconds:.1f} over the whole run, resumed from its checkpoint)"
                    if result.seconds > train_seconds + 1
                    else ""
                ),
            ),
            ("s/step", f"{max(result.seconds, train_seconds) / max(result.steps, 1):.3f}"),
            ("final losses", ", ".join(f"{k}={v:.3f}" for k, v in result.final_losses.items()) or "-"),
            ("diversity vs real", f"{diversity:.2f}"),
            ("warnings", "; ".join(result.warnings) or "none"),
            *report_rows,
            ("sample grid", str(grid)),
            ("config", json.dumps({k: v for k, v in config.items() if k not in ("kind",)}, sort_keys=True)),
        ]
    )


if __name__ == "__main__":
    main()
