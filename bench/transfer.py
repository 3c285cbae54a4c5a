"""Start from a generator in the registry (#20): does fine-tuning from a base beat training from scratch?

Base: ONE class-conditional DDIM on the nine other Fashion-MNIST classes of ``--data``/train (the first
``--base-count`` photos of each, sorted names, 32 px grey), with the config the app builds for that dataset
(``build_config`` with its classes, class counts and orientation, preset quick; ``--base-set KEY=VALUE``
overrides it as the operator's overrides do, e.g. a shorter CPU run). It is trained once and kept under
``--out`` (``base/``): a re-run reuses it while its config is the same.

``--kind dcgan``: the same question for the DCGAN (its default preset, standard): the base is one unconditional
DCGAN on the nine classes' photos together (a DCGAN learns no classes), its discriminator saved with it, and the
fine-tuned child follows the DCGAN's recipe (a third of the steps at half the learning rates, FreezeD over the
discriminator's first stride-2 block). Cached under ``bench/out/transfer_dcgan``.

Target: the first ``--count`` photos of ``--target`` (150 sandals), as a plain folder (no labels: the child
is unconditional), with the augment stage the wizard turns on by default (``--no-augment``: off). Arms, each
at every step count of ``--steps`` and every training seed of ``--seeds``:

- ``scratch``:   the quick preset from random weights (``build_config`` without a base), and its own length
                 (1,500 steps for 150 photos on a CPU);
- ``finetuned``: the product's fine-tuning path (as ``apps.generators.stages.training._train``): ``read_base`` of the
                 base's files, ``build_config(..., base=base.recipe_config())`` (the base's U-Net shape and the
                 fine-tuning recipe: a third of the steps, the preset's learning rate, its own warm-up), then
                 ``start_from(model, base)`` (the base's EMA U-Net; its "no label" row folded in for an
                 unconditional child); also at the recipe's own length.

A step count is the user's ``total_steps`` option (so the learning-rate schedule fits the run); ``--set``
changes both arms' configs (as the operator's overrides, before the recipe); ``--recipe-set`` changes the
fine-tuned arm's only, after the recipe (as a user's advanced settings: e.g. another recipe's learning rates;
give such a variant its own ``--out``, with ``base/`` and the scratch runs linked in, so that its runs do not
replace the recipe's in the cache).

Measured per run on ``--samples`` images made with the generation defaults, against the unseen photos of
``--data``/more/<target> (2,000): the quality report's realism ``precision`` and ``coverage`` (in its
self-supervised features, against the first ``--samples`` unseen photos, as bench/faithful.py does), ``KID``
(x1e3, in one feature net trained once per run by rotations on the unseen photos not used as "new photos"),
the report's flip- and shift-aware near-copies (:mod:`apps.ml.quality.copies`, augmented copies included), the share
facing the other way (bench/faithful.py), and the CPU seconds of training. The same numbers for ``--samples``
*new real photos* (the next unseen ones) are the reference row of the same run. Every run is measured with
the same report seed (``--measure-seed``), so every arm is compared in the same feature spaces.

Target (#20): the fine-tuned generator at a third of the steps (the recipe's length) reaches the realism
(precision, KID) of the from-scratch quick preset, and at equal steps beats it; near-copies <= 2 %. The
comparisons print the mean difference over seeds with a 95 % t interval (paired by training seed).

Everything is cached under ``--out`` (the base, each run's model, samples and scores); writes ``results.json``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/transfer.py --threads 1 --smoke     # a code check, about 2 minutes
    OMP_NUM_THREADS=1 .venv/bin/python bench/transfer.py --threads 1 --base-set total_steps=6000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `apps`

from apps.ml.engine import registry  # noqa: E402
from apps.ml.engine.augment import augment_dataset, augmentation_copies  # noqa: E402
from apps.ml.engine.config import build_config  # noqa: E402
from apps.ml.engine.images import to_uint8  # noqa: E402
from apps.ml.engine.orientation import measure as measure_orientation  # noqa: E402
from apps.ml.engine.transfer import WEIGHTS_FILE, read_base, start_from  # noqa: E402
from apps.ml.quality.classifier import ClassifierSettings  # noqa: E402
from apps.ml.quality.metrics import kernel_distance, train_feature_net  # noqa: E402
from apps.ml.quality.report import quality_report  # noqa: E402
from bench.balance import _progress, print_table, sample_cached, train_generator  # noqa: E402
from bench.faithful import other_way_share  # noqa: E402
from bench.quality import DEFAULT_DATA  # noqa: E402
from bench.quick_preset import load_folder, parse_overrides  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "transfer"
# The preset the app gives each type when the user leaves it out (apps.generators: quick for a DDIM, standard for
# a DCGAN): the from-scratch arm's recipe and the one the fine-tuning recipe shortens.
PRESETS = {"ddim": "quick", "dcgan": "standard"}
ARMS = ("scratch", "finetuned")
COPY_TARGET = 0.02
# Two-sided 95 % quantiles of Student's t by degrees of freedom (no scipy here); 1.96 beyond 30.
T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}


# --------------------------------------------------------------------------- data


def load_target(args) -> dict:
    """uint8 photos of the target, its unseen photos split into the report's held-out set, the new photos (the
    reference row) and the KID reference (every unseen photo but the new ones)."""
    photos = to_uint8(load_folder(args.data / "train" / args.target, args.resolution, args.count))
    unseen = to_uint8(load_folder(args.data / "more" / args.target, args.resolution, args.unseen))
    k = args.samples
    if len(unseen) < 3 * k:
        raise SystemExit(f"{len(unseen)} unseen photos: need at least 3 x --samples ({3 * k})")
    return {
        "photos": photos,
        "heldout": unseen[:k],
        "new": unseen[k : 2 * k],
        "kid_reference": torch.cat([unseen[:k], unseen[2 * k :]]),
        "mean": unseen.float().div(255).mean(0),
        "unseen": len(unseen),
    }


def train_base(args, out: Path) -> tuple:
    """The registry's base: a conditional DDIM on every other class (a DCGAN: one unconditional DCGAN on their
    photos together), as the app builds its config (cached)."""
    classes = sorted(p.name for p in (args.data / "train").iterdir() if p.is_dir() and p.name != args.target)
    per_class = [to_uint8(load_folder(args.data / "train" / c, args.resolution, args.base_count)) for c in classes]
    if args.kind == "dcgan":
        return train_unlabelled_base(
            torch.cat(per_class),
            "dcgan",
            seed=args.base_seed,
            overrides=args.base_set,
            directory=out / "base",
            retrain=args.retrain_base,
        )
    return train_labelled_base(
        per_class,
        classes,
        seed=args.base_seed,
        overrides=args.base_set,
        directory=out / "base",
        retrain=args.retrain_base,
    )


def train_labelled_base(
    per_class: list[torch.Tensor],
    classes: list[str],
    *,
    seed: int,
    overrides: list[str],
    directory: Path,
    retrain: bool,
    tag: str = "base",
) -> tuple:
    """A base for fine-tuning: a conditional DDIM on ``per_class`` (uint8 photos of each of ``classes``) with the
    config the app builds for that dataset (its class counts and orientation, preset quick; ``overrides``:
    KEY=VALUE), trained in ``directory`` (reused while its config is the same). Returns (Base, timing, config)."""
    images = torch.cat(per_class)
    labels = torch.repeat_interleave(torch.arange(len(classes)), torch.tensor([len(p) for p in per_class]))
    config = build_config(
        registry.get("ddim"),
        resolution=images.shape[-1],
        channels=images.shape[1],
        preset="quick",
        image_count=len(images),
        device="cpu",
        classes=classes,
        class_counts=[len(p) for p in per_class],
        orientation=measure_orientation(images, labels, classes).as_dict(),
        overrides={"seed": seed, **parse_overrides(overrides)},
    )
    print(
        f"{tag}: conditional DDIM on {len(images)} photos of {len(classes)} classes ({', '.join(classes)}), "
        f"{config['total_steps']} steps of {config['batch_size']} (overrides {overrides or 'none'})",
        flush=True,
    )
    _, timing = train_generator(directory, config, images, labels, tag, retrain)
    return read_base(directory / "model"), timing, config


def train_unlabelled_base(
    images: torch.Tensor, kind: str, *, seed: int, overrides: list[str], directory: Path, retrain: bool
) -> tuple:
    """A base of a type that learns no classes: ``kind`` on ``images`` (uint8) with the config the app builds
    for them (its default preset, orientation; ``overrides``: KEY=VALUE), trained in ``directory`` (reused
    while its config is the same). Returns (Base, timing, config)."""
    config = build_config(
        registry.get(kind),
        resolution=images.shape[-1],
        channels=images.shape[1],
        preset=PRESETS[kind],
        image_count=len(images),
        device="cpu",
        orientation=measure_orientation(images).as_dict(),
        overrides={"seed": seed, **parse_overrides(overrides)},
    )
    print(
        f"base: {kind} ({PRESETS[kind]}) on {len(images)} photos, {config['total_steps']} steps of "
        f"{config['batch_size']} (overrides {overrides or 'none'})",
        flush=True,
    )
    _, timing = train_generator(directory, config, images, None, "base", retrain)
    return read_base(directory / "model"), timing, config


# --------------------------------------------------------------------------- the arms


def child_config(
    arm: str,
    steps: int | None,
    seed: int,
    photos: torch.Tensor,
    orientation: dict,
    base,
    overrides: dict,
    kind: str = "ddim",
    recipe: dict | None = None,
) -> dict:
    """The config the app builds for the target photos (a ``kind`` at its default preset): from scratch, or
    fine-tuned from ``base``; ``steps``: the user's ``total_steps`` option (None: the recipe's own length);
    ``recipe``: the fine-tuned arm's own options, after the recipe (as a user's advanced settings)."""
    options = {"seed": seed} | ({"total_steps": steps} if steps is not None else {})
    if arm == "finetuned":
        options |= recipe or {}
    return build_config(
        registry.get(kind),
        resolution=photos.shape[-1],
        channels=photos.shape[1],
        preset=PRESETS[kind],
        image_count=len(photos),
        device="cpu",
        overrides=overrides,
        options=options,
        orientation=orientation,
        base=base.recipe_config() if arm == "finetuned" else None,
    )


def train_child(directory: Path, config: dict, training: torch.Tensor, base, base_digest: str | None):
    """Train (or reuse) one run: a fresh generator with ``config`` (a DDIM, or the type ``config["kind"]``
    names), started from ``base`` where given, as the pipeline's train stage does. Returns (model, timing, key)."""
    generator_type = registry.get(config.get("kind") or "ddim")
    key = json.dumps({"config": config, "base": base_digest, "training": _digest(training)}, sort_keys=True)
    key_file = directory / "train_key.json"
    if key_file.exists() and key_file.read_text() == key and (directory / "timing.json").exists():
        return generator_type.load(directory / "model"), json.loads((directory / "timing.json").read_text()), key
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    model = generator_type(config, device="cpu")
    notes = []
    if base is not None:
        start_from(model, base)
        notes = base.notes[-1:]  # which classes kept their rows, which are new
    started, cpu_started = time.perf_counter(), time.process_time()
    result = model.train(
        training.float() / 127.5 - 1.0,
        checkpoint_dir=directory / "checkpoints",
        on_progress=_progress(directory.name, started),
    )
    timing = {
        "steps": result.steps,
        "train_cpu_s": round(time.process_time() - cpu_started, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "warnings": result.warnings,
        "final_losses": result.final_losses,
        "base_notes": notes,
    }
    model.save(directory / "model")
    shutil.rmtree(directory / "checkpoints", ignore_errors=True)  # the model is kept; checkpoints are big
    (directory / "timing.json").write_text(json.dumps(timing, indent=1))
    key_file.write_text(key)
    return model, timing, key


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:16]


def score(
    images: torch.Tensor,
    target: dict,
    augmented: torch.Tensor | None,
    kid_net,
    kid_features: torch.Tensor,
    args,
    settings: ClassifierSettings | None,
) -> dict:
    """Realism, coverage, KID, near-copies and the share facing the other way of uint8 ``images``."""
    report = quality_report(
        generated=images,
        train=target["photos"],
        heldout=target["heldout"],
        augmented=augmented,
        measure_usefulness=False,
        seeds=(args.measure_seed,),
        settings=settings,
    )
    pick = lambda m: {k: m.get(k) for k in ("value", "std", "reference")}  # noqa: E731
    return {
        "precision": pick(report["precision"]),
        "coverage": pick(report["coverage"]),
        "kid": kernel_distance(kid_features, kid_net(images), seed=args.measure_seed),
        "report_kid": report["kid"]["value"],
        "copy_share": report["copy_share"]["value"],
        "other_way": other_way_share(images, target["mean"]),
        "verdict": report["verdict"],
    }


def run_one(
    arm: str,
    steps: int | None,
    seed: int,
    target: dict,
    orientation: dict,
    base,
    base_digest: str,
    kid_net,
    kid_features: torch.Tensor,
    args,
    settings,
    out: Path,
) -> dict:
    """Train, sample and score one (arm, steps, seed) run, each step cached."""
    config = child_config(
        arm, steps, seed, target["photos"], orientation, base, parse_overrides(args.set), args.kind, args.recipe
    )
    directory = out / "runs" / f"{arm}_{config['total_steps']}_s{seed}"
    photos = target["photos"]
    augmented = None
    if args.augment:  # the augment stage: mirror images and turns only where the photos show them
        augmented = augment_dataset(
            photos,
            augmentation_copies(len(photos)),
            seed=seed,
            mirror=bool(orientation["mirrors"]),
            quarter_turns=bool(orientation["rotations"]),
        )
    model, timing, key = train_child(
        directory,
        config,
        augmented if augmented is not None else photos,
        base if arm == "finetuned" else None,
        base_digest if arm == "finetuned" else None,
    )
    sample_key = hashlib.sha256(f"{key}-{args.samples}-{seed + 1000}".encode()).hexdigest()[:16]
    images, _ = sample_cached(
        directory / "samples.safetensors", lambda: model.sample(args.samples, seed=seed + 1000), sample_key
    )
    score_key = f"{sample_key}-{args.measure_seed}-{_digest(target['heldout'])}-{_digest(kid_features)}"
    saved = directory / "result.json"
    if saved.exists() and json.loads(saved.read_text()).get("key") == score_key:
        return json.loads(saved.read_text())
    result = {
        "key": score_key,
        "arm": arm,
        "steps": timing["steps"],
        "seed": seed,
        **timing,
        "config": {
            k: config[k]
            for k in (
                "total_steps",
                "batch_size",
                "learning_rate",
                "warmup_steps",
                "base_channels",
                "augment_p",
                "hflip",
                "augment_flip",
                "lr_g",
                "lr_d",
                "ngf",
                "freeze_d_blocks",
            )
            if k in config
        },
        **score(images, target, augmented, kid_net, kid_features, args, settings),
    }
    saved.write_text(json.dumps(result, indent=1))
    print(
        f"  {arm} {result['steps']} steps seed {seed}: precision {result['precision']['value']:.3f}, coverage "
        f"{result['coverage']['value']:.3f}, KID x1e3 {result['kid'] * 1e3:.1f}, copies {result['copy_share']:.1%}, "
        f"{result['train_cpu_s']:.0f} CPU-s",
        flush=True,
    )
    return result


# --------------------------------------------------------------------------- summary


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def difference(a: list[dict], b: list[dict], metric) -> dict:
    """Mean of ``metric(a) - metric(b)`` paired by training seed, with a 95 % t interval over the seeds."""
    by_seed = {r["seed"]: r for r in b}
    diffs = [metric(r) - metric(by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]
    mean, std = _mean_std(diffs)
    df = len(diffs) - 1
    t = T975[max(k for k in T975 if k <= df)] if 1 <= df <= 30 else 1.96  # between table rows: the one below
    half = t * std / len(diffs) ** 0.5 if df >= 1 else float("nan")
    return {"mean": mean, "low": mean - half, "high": mean + half, "seeds": len(diffs)}


def _cell(runs: list[dict], metric, scale: float = 1.0, digits: int = 3) -> str:
    mean, std = _mean_std([metric(r) * scale for r in runs])
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(runs) > 1 else f"{mean:.{digits}f}"


def _diff_text(d: dict, scale: float = 1.0, digits: int = 3) -> str:
    return f"{d['mean'] * scale:+.{digits}f} [{d['low'] * scale:+.{digits}f}, {d['high'] * scale:+.{digits}f}]"


PRECISION = lambda r: r["precision"]["value"]  # noqa: E731
COVERAGE = lambda r: r["coverage"]["value"]  # noqa: E731
KID = lambda r: r["kid"]  # noqa: E731


def compare(name: str, ft: list[dict], scratch: list[dict]) -> dict:
    """Fine-tuned runs against from-scratch runs: precision and KID differences; whether each is reached."""
    p, k = difference(ft, scratch, PRECISION), difference(ft, scratch, KID)
    return {
        "what": name,
        "precision_diff": p,
        "kid_diff": k,
        "precision_reached": p["mean"] >= 0,
        "kid_reached": k["mean"] <= 0,
        "precision_better": p["mean"] > 0,
        "kid_better": k["mean"] < 0,
        "precision_clearly_better": p["low"] > 0,
        "kid_clearly_better": k["high"] < 0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None, help=f"cache and results (default {DEFAULT_OUT})")
    parser.add_argument("--kind", choices=sorted(PRESETS), default="ddim", help="the generator type of every run")
    parser.add_argument("--target", default="sandal")
    parser.add_argument("--count", type=int, default=150, help="target photos (the first N, sorted names)")
    parser.add_argument("--base-count", type=int, default=500, help="base photos per other class")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument(
        "--steps",
        default="300,600,1500",
        help="step counts of both arms (each arm also runs at its own default length)",
    )
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (sampling seed: seed + 1000)")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--samples", type=int, default=500, help="generated images per run (and new real photos)")
    parser.add_argument("--unseen", type=int, default=None, help="unseen photos to load (default: all)")
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the augment stage's offline copies (the wizard's default: on)",
    )
    parser.add_argument(
        "--base-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the base's config (e.g. total_steps=6000)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of both arms' configs (before the fine-tuning recipe)",
    )
    parser.add_argument(
        "--recipe-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the fine-tuned arm's own setting, after the recipe, as a user's advanced settings (e.g. lr_g=0.0002)",
    )
    parser.add_argument("--base-seed", type=int, default=0)
    parser.add_argument("--measure-seed", type=int, default=0, help="the quality report's seed for every run")
    parser.add_argument("--retrain-base", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="base 20 photos a class, a few steps, 8 base channels, 16 samples: a code check",
    )
    args = parser.parse_args(argv)
    args.recipe = parse_overrides(args.recipe_set)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = None
    if args.smoke:
        args.base_count, args.count, args.steps, args.seeds, args.samples, args.unseen = 20, 30, "15", "0,1", 16, 64
        tiny = ["checkpoint_every=100"] + (
            ["ngf=8", "ndf=8"] if args.kind == "dcgan" else ["grid_images=4", "grid_steps=4", "base_channels=8"]
        )
        args.base_set = ["total_steps=60", *tiny, *args.base_set]
        args.set = ["total_steps=30", *tiny, *args.set]  # scratch's own length 30, the recipe's a third: 10
        settings = ClassifierSettings(steps=30)
        args.out = args.out or DEFAULT_OUT.with_name(f"transfer{'' if args.kind == 'ddim' else '_' + args.kind}_smoke")
    out = args.out or (DEFAULT_OUT if args.kind == "ddim" else DEFAULT_OUT.with_name(f"transfer_{args.kind}"))
    out.mkdir(parents=True, exist_ok=True)
    steps = [int(s) for s in args.steps.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    arms = [a for a in args.arms.split(",") if a]
    started = time.perf_counter()

    target = load_target(args)
    photos = target["photos"]
    orientation = measure_orientation(photos).as_dict()
    base, base_timing, base_config = train_base(args, out)
    base_digest = hashlib.sha256((out / "base" / "model" / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]
    own = {
        arm: child_config(arm, None, 0, photos, orientation, base, parse_overrides(args.set), args.kind, args.recipe)[
            "total_steps"
        ]
        for arm in ARMS
    }
    print(
        f"target: {len(photos)} {args.target} photos (augment {'on' if args.augment else 'off'}, mirrors "
        f"{orientation['mirrors']}); {target['unseen']} unseen; own lengths: scratch {own['scratch']}, "
        f"fine-tuned {own['finetuned']} steps; steps {steps}; seeds {seeds}",
        flush=True,
    )

    kid_net = train_feature_net(target["kid_reference"], None, seed=args.measure_seed, settings=settings)
    kid_features = kid_net(target["kid_reference"])
    reference = score(target["new"], target, None, kid_net, kid_features, args, settings)
    runs: dict[str, dict[int, list[dict]]] = {}
    for arm in arms:
        for n in sorted({*steps, own[arm]}):
            runs.setdefault(arm, {})[n] = [
                run_one(
                    arm,
                    None if n == own[arm] else n,
                    seed,
                    target,
                    orientation,
                    base,
                    base_digest,
                    kid_net,
                    kid_features,
                    args,
                    settings,
                    out,
                )
                for seed in seeds
            ]

    comparisons = []
    if set(ARMS) <= set(arms):
        ft, sc = runs["finetuned"], runs["scratch"]
        third = own["finetuned"]
        comparisons.append(
            compare(
                f"fine-tuned at {third} steps (the recipe's, a third) vs scratch at "
                f"{own['scratch']} (the {PRESETS[args.kind]} preset)",
                ft[third],
                sc[own["scratch"]],
            )
        )
        for n in steps:
            comparisons.append(compare(f"equal steps: {n}", ft[n], sc[n]))
    ft_copies = [r["copy_share"] for by_steps in runs.get("finetuned", {}).values() for r in by_steps]
    verdict = {}
    if comparisons:
        head, equal = comparisons[0], comparisons[1:]
        verdict = {
            "third_of_steps_reaches_scratch": head["precision_reached"] and head["kid_reached"],
            "equal_steps_beats_scratch": all(c["precision_better"] and c["kid_better"] for c in equal),
            "equal_steps_clearly_beats_scratch": all(
                c["precision_clearly_better"] and c["kid_clearly_better"] for c in equal
            ),
            "copies_le_2pct": max(ft_copies) <= COPY_TARGET,
            "max_copy_share": max(ft_copies),
        }
        verdict["target_met"] = all(
            verdict[k] for k in ("third_of_steps_reaches_scratch", "equal_steps_beats_scratch", "copies_le_2pct")
        )
    results = {
        "target": args.target,
        "count": len(photos),
        "unseen": target["unseen"],
        "samples": args.samples,
        "augment": args.augment,
        "seeds": seeds,
        "steps": steps,
        "own_steps": own,
        "base": {
            "timing": base_timing,
            "overrides": args.base_set,
            "config": {
                k: base_config[k]
                for k in (
                    "kind",
                    "total_steps",
                    "batch_size",
                    "learning_rate",
                    "base_channels",
                    "num_classes",
                    "classes",
                    "image_count",
                    "augment_p",
                    "ngf",
                    "lr_g",
                )
                if k in base_config
            },
        },
        "overrides": args.set,
        "recipe_overrides": args.recipe_set,
        "reference_new_photos": reference,
        "runs": {arm: {str(n): rs for n, rs in by_steps.items()} for arm, by_steps in runs.items()},
        "base_notes": sorted(
            {n for by_steps in runs.get("finetuned", {}).values() for r in by_steps for n in r.get("base_notes", [])}
        ),
        "comparisons": comparisons,
        "verdict": verdict,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))

    print(
        f"\nbase: {base_timing['steps']} steps, {base_timing['cpu_s_this_session']:.0f} CPU-s when trained; "
        f"each cell: mean ± std over seeds {seeds}; {args.samples} images against {target['unseen']} unseen "
        f"{args.target} photos; precision / coverage in the report's features (its reference, the {len(photos)} "
        f"training photos, in brackets for the new photos' row)"
    )
    header = [
        "arm",
        "steps",
        "seeds",
        "train CPU-s",
        "precision",
        "coverage",
        "KID x1e3",
        "copies",
        "other way",
        "verdicts",
    ]
    ref = reference
    rows = [
        [
            f"{args.samples} new real photos (reference)",
            "-",
            "-",
            "-",
            f"{ref['precision']['value']:.3f} ({ref['precision']['reference']:.3f})",
            f"{ref['coverage']['value']:.3f} ({ref['coverage']['reference']:.3f})",
            f"{ref['kid'] * 1e3:.1f}",
            f"{ref['copy_share']:.1%}",
            f"{ref['other_way']:.1%}",
            ref["verdict"],
        ]
    ]
    for arm, by_steps in runs.items():
        for n, rs in by_steps.items():
            if not rs:  # --seeds '': the base only
                continue
            own_mark = " (own)" if n == own[arm] else ""
            rows.append(
                [
                    arm,
                    f"{n}{own_mark}",
                    str(len(rs)),
                    _cell(rs, lambda r: r["train_cpu_s"], digits=0),
                    _cell(rs, PRECISION),
                    _cell(rs, COVERAGE),
                    _cell(rs, KID, 1e3, 1),
                    _cell(rs, lambda r: r["copy_share"], 100, 1) + " %",
                    _cell(rs, lambda r: r["other_way"], 100, 1) + " %",
                    ", ".join(sorted({r["verdict"] for r in rs})),
                ]
            )
    print_table(header, rows)
    if comparisons:
        print("\nfine-tuned minus scratch, mean over seeds [95 % t interval, paired by training seed]:")
        for c in comparisons:
            print(
                f"  {c['what']}: precision {_diff_text(c['precision_diff'])}, "
                f"KID x1e3 {_diff_text(c['kid_diff'], 1e3, 1)}"
            )
        v = verdict
        print(
            f"target: a third of the steps reaches the {PRESETS[args.kind]} preset (precision and KID, means): "
            f"{'met' if v['third_of_steps_reaches_scratch'] else 'MISSED'}; at equal steps better (means): "
            f"{'met' if v['equal_steps_beats_scratch'] else 'MISSED'} (every interval clear of 0: "
            f"{'yes' if v['equal_steps_clearly_beats_scratch'] else 'no'}); copies <= 2 %: "
            f"{'met' if v['copies_le_2pct'] else 'MISSED'} (max {v['max_copy_share']:.1%}) -> "
            f"{'TARGET MET' if v['target_met'] else 'TARGET MISSED'}"
        )
    if args.smoke:
        print("smoke run: a code check; its numbers mean nothing")
    print(f"results: {out / 'results.json'} ({results['total_seconds']:.0f} s this run)")


if __name__ == "__main__":
    main()
