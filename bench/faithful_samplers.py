"""Faithful images (#18): do the DDIM's grey backgrounds come from the sampler's path? (no Django)

Loads a DDIM arm that ``bench/faithful.py`` trained (``<out>/<arm>/model``) and draws ``--samples`` images
with each sampling variant, scored like ``faithful.py`` against 500 unseen sandals:

- ``base``: the product's sampler (DPM-Solver++(2M) at the model's sampling steps);
- ``refine<t>[+<t>...]``: the same, then each output noised again to timestep ``t`` and denoised in one
  network call, for each ``t`` in turn (a corrector: does the network pull a grey background back to black?);
- ``ddimeta<eta>-<steps>``: stochastic DDIM (``eta`` 1 is DDPM-like ancestral sampling), whose fresh noise
  at every step can wash out errors made earlier on the path.

    .venv/bin/python bench/faithful.py --arm ddim-exact --threads 1
    .venv/bin/python bench/faithful_samplers.py --arm ddim-exact --variants base,refine20,refine50+20,ddimeta1-100
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `apps`

from apps.ml.ddim.sampler import run_sampler  # noqa: E402
from apps.ml.ddim.schedule import predict_x0_eps  # noqa: E402
from apps.ml.engine import registry  # noqa: E402
from apps.ml.engine.images import save_grid  # noqa: E402
from apps.ml.quality.report import quality_report  # noqa: E402
from bench.faithful import BLACK, DATA, OUT, background, uint8  # noqa: E402
from bench.quick_preset import load_folder  # noqa: E402

BATCH = 250


def refine(model, denoise, x0: torch.Tensor, timesteps: list[int], generator: torch.Generator) -> torch.Tensor:
    """Noise ``x0`` again to each of ``timesteps`` in turn and take the network's one-call estimate of the image."""
    alpha_bar = model.schedule.alpha_bar_on("cpu")
    x = x0
    for t in timesteps:
        a = alpha_bar[t]
        x_t = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=generator)
        out = denoise(x_t, torch.full((len(x),), float(t))).float()
        x, _ = predict_x0_eps(x_t, out, a, model.config.objective)
        x = x.clamp(-1, 1)
    return x


def draw(model, variant: str, n: int, seed: int) -> torch.Tensor:
    """``n`` images (uint8) drawn with the sampling ``variant``."""
    generator = torch.Generator().manual_seed(seed)
    denoise = model._denoiser()
    steps, objective = model.config.sampling_steps, model.config.objective
    out = []
    for start in range(0, n, BATCH):
        shape = (min(BATCH, n - start), model.config.channels, model.config.resolution, model.config.resolution)
        if variant.startswith("ddimeta"):
            eta, ddim_steps = variant.removeprefix("ddimeta").split("-")
            x = run_sampler(
                "ddim",
                denoise,
                model.schedule,
                shape,
                steps=int(ddim_steps),
                objective=objective,
                eta=float(eta),
                generator=generator,
            )
        else:
            x = run_sampler(
                "dpmpp2m", denoise, model.schedule, shape, steps=steps, objective=objective, generator=generator
            )
            if variant.startswith("refine"):
                x = refine(model, denoise, x, [int(t) for t in variant.removeprefix("refine").split("+")], generator)
            elif variant != "base":
                raise SystemExit(f"unknown variant {variant!r}")
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", required=True, help="a DDIM arm trained by bench/faithful.py")
    parser.add_argument("--variants", default="base,refine20,ddimeta1-100")
    parser.add_argument("--cls", default="sandal")
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    directory = args.out / args.arm
    model = registry.get("ddim").load(directory / "model")
    photos = uint8(load_folder(DATA / "train" / args.cls, model.config.resolution, limit=args.count))
    fresh = uint8(load_folder(DATA / "more" / args.cls, model.config.resolution))
    mask = ((fresh <= BLACK).float().mean(0) >= 0.9)[0]
    heldout, new_photos = fresh[:500], fresh[500:1000]
    print(f"new photos' background {background(new_photos, mask)['mean']}/255")
    print(
        "| variant | sample CPU-s | precision (x new) | coverage (x new) | finest SWD (x new) | near-copies | "
        "background /255 | black px | verdict |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for variant in args.variants.split(","):
        started = time.process_time()
        images = draw(model, variant, args.samples, args.seed)
        cpu_s = time.process_time() - started
        report = quality_report(
            generated=images, train=photos, heldout=heldout, augmented=None, measure_usefulness=False, seeds=(0,)
        )
        p, c, swd = report["precision"], report["coverage"], report["swd"]
        bg = background(images, mask)
        row = {
            "variant": variant,
            "sample_cpu_s": round(cpu_s),
            "precision": round(p["value"] / p["reference"], 2),
            "coverage": round(c["value"] / c["reference"], 2),
            "finest_swd": round(swd["levels"][0] / swd["reference_levels"][0], 2),
            "copies": report["copy_share"]["value"],
            "background": bg["mean"],
            "black": bg["black_share"],
            "verdict": report["verdict"],
        }
        print(
            f"| {variant} | {row['sample_cpu_s']} | {row['precision']}x | {row['coverage']}x | {row['finest_swd']}x "
            f"| {row['copies']:.1%} | {row['background']} | {row['black']:.0%} | {row['verdict']} |",
            flush=True,
        )
        (directory / f"sampler-{variant}.json").write_text(json.dumps(row, indent=1))
        save_grid(images[:64], directory / f"sampler-{variant}.png", columns=8)


if __name__ == "__main__":
    main()
