"""The study's scenarios on Fashion-MNIST: quality report and usefulness per generator (no Django).

For one class (default: sandal) and each generator type it trains the
generator on

- ``full``:      the class's first 500 training images (``--full``);
- ``small``:     the first 150 of them (``--small``);
- ``small+aug``: the same 150 plus offline augmented copies (``--augment-copies``);

samples ``--samples`` images (default 1.25 x the training count, so enough
survive the filter) and prints :func:`quality_report` as one table row:
verdict, precision and coverage (what new real photos score at the same size
in brackets), flip- and shift-aware near-copy share, the data-copying z, SWD /
KID (held-out real reference in brackets) and the usefulness test over
``--seeds``: balanced accuracy over all 10 classes on the test split (100 real
images per class, never seen by the generator), as mean +- std, for real
photos with plain augmentation (``real_aug``), real + generated with the same
augmentation (``mixed_aug``) and the oracle (150 more real sandals, same
augmentation); ``credit`` = mixed_aug - real_aug and ``oracle credit`` =
oracle - real_aug in accuracy points with their 95 % bootstrap intervals
(seeds and test images redrawn); GQI chance-corrected.

Reference rows measured in the same run:

- ``real-as-generated`` (where the class has 3x the count): *more real* training images stand
  in for the generated ones; what a perfect generator would score.
- ``noise`` (optional, ``--references real,noise``): uniform noise.

Example (tiny, CPU, about 5 minutes on a small machine):
    .venv/bin/python bench/quality.py --generators dcgan --scenarios small \\
        --set total_steps=100 --classifier-steps 100 --seeds 0 --threads 1

Full (GPU): .venv/bin/python bench/quality.py --json /tmp/quality.json

``--images-dir DIR`` keeps each generator's images (``<scenario>_<generator>.safetensors``
and a grid of the first 64 as ``.png``); with ``--reuse`` a later run reads them instead
of training again, e.g. to score the same images with another usefulness design
(``--negatives merged``: the other classes as one "not this class" set, as a user with a
single class has it; ``--classifier-steps``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `apps`

from apps.ml.engine import registry  # noqa: E402
from apps.ml.engine.augment import augment_dataset  # noqa: E402
from apps.ml.engine.checkpoint import load_tensors, save_tensors_atomic  # noqa: E402
from apps.ml.engine.device import pick_device  # noqa: E402
from apps.ml.engine.images import save_grid, to_uint8  # noqa: E402
from apps.ml.quality.classifier import ClassifierSettings  # noqa: E402
from apps.ml.quality.report import quality_report  # noqa: E402
from bench.quick_preset import load_folder, parse_overrides  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist"


@dataclass
class Scenario:
    """One training set: the first ``count`` images of the class, plus ``augment`` copies of each."""

    name: str
    count: int
    augment: int = 0


@dataclass
class Data:
    """Everything a scenario draws from, uint8 [N,C,R,R] at the generator resolution."""

    target_train: torch.Tensor  # the class's training split, in file-name order
    target_test: torch.Tensor  # the class's test split: held out from every generator
    negatives_train: list[torch.Tensor]
    negatives_test: list[torch.Tensor]
    class_names: list[str]


def load_data(
    root: Path,
    target: str,
    resolution: int,
    negatives_per_class: int,
    merged: bool = False,
    more_test_from: int | None = None,
) -> Data:
    """The class's images and the other classes' (``merged``: as one "not this class" set).

    ``more_test_from``: the class's training images from this index on, and the other classes'
    training images beyond ``negatives_per_class``, join the test sets (no generator or
    classifier learns from them), for a test with less sampling noise.
    """

    def load(split: str, name: str, limit: int | None = None) -> torch.Tensor:
        return to_uint8(load_folder(root / split / name, resolution, limit))

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if target not in classes:
        raise SystemExit(f"class {target!r} not in {root}: {', '.join(classes)}")
    others = [c for c in classes if c != target]
    negatives_all = [load("train", c, None if more_test_from is not None else negatives_per_class) for c in others]
    negatives_train = [n[:negatives_per_class] for n in negatives_all]
    negatives_test = [load("test", c) for c in others]
    target_train, target_test = load("train", target), load("test", target)
    if more_test_from is not None:
        target_test = torch.cat([target_test, target_train[more_test_from:]])
        negatives_test = [torch.cat([t, n[negatives_per_class:]]) for t, n in zip(negatives_test, negatives_all)]
    if merged:
        negatives_train, negatives_test = [torch.cat(negatives_train)], [torch.cat(negatives_test)]
        others = [f"not {target} ({len(others)} classes)"]
    return Data(
        target_train=target_train,
        target_test=target_test,
        negatives_train=negatives_train,
        negatives_test=negatives_test,
        class_names=[target, *others],
    )


def train_and_sample(
    kind: str,
    images: torch.Tensor,
    *,
    count: int,
    augment: int,
    samples: int,
    seed: int,
    preset: str,
    overrides: dict,
    device: str,
) -> tuple[torch.Tensor, float, list[str]]:
    """Train generator ``kind`` on uint8 ``images`` and return (samples, train seconds, warnings)."""
    data = images.float() / 127.5 - 1.0
    if augment:
        data = augment_dataset(data, augment, seed=seed)
    generator_type = registry.get(kind)
    config = generator_type.default_config(
        resolution=images.shape[-1], channels=images.shape[1], preset=preset, image_count=count, device=device
    )
    config["seed"] = seed
    config.update(overrides)
    model = generator_type(config, device=device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"bench-quality-{kind}-") as tmp:
        result = model.train(data, checkpoint_dir=Path(tmp))
    seconds = time.perf_counter() - started
    return model.sample(samples, seed=seed + 1000), seconds, result.warnings


def _mean_std(m: dict, scale: float = 1.0, digits: int = 3) -> str:
    if m.get("value") is None:
        return "-"
    std = m.get("std")
    return f"{m['value'] * scale:.{digits}f}" + (f"±{std * scale:.{digits}f}" if std else "")


def _text(m: dict, digits: int = 2) -> str:
    return "-" if m.get("value") is None else f"{m['value']:.{digits}f}"


def _with_ref(m: dict, digits: int) -> str:
    ref = m.get("reference")
    return _text(m, digits) + (f" ({ref:.{digits}f})" if m.get("value") is not None and ref is not None else "")


def _interval(m: dict | None) -> str:
    """A credit in accuracy points with its 95 % interval, e.g. '+0.4 [-0.3, +1.1]'."""
    if not m or m.get("value") is None:
        return "-"
    return f"{m['value'] * 100:+.1f} [{m['low'] * 100:+.1f}, {m['high'] * 100:+.1f}]"


def _ratio_ref(m: dict) -> str:
    if m.get("value") is None:
        return "-"
    return f"{m['value']:.2f} ({m['reference']:.2f})" if m.get("reference") is not None else f"{m['value']:.2f}"


def row(scenario: str, generator: str, report: dict, seconds: float | None) -> list[str]:
    u = report["usefulness"]
    return [
        scenario,
        generator,
        report["verdict"],
        _ratio_ref(report["precision"]),
        _ratio_ref(report["coverage"]),
        f"{report['copy_share']['value'] * 100:.1f}",
        _text(report["memorisation"], 1),
        _with_ref(report["swd"], 0),
        _with_ref(report["kid"], 3),
        _mean_std(u["real_aug"]),
        _mean_std(u["mixed_aug"]),
        _mean_std(u["oracle"]),
        _interval(u.get("credit")),
        _interval(u.get("oracle_credit")),
        _mean_std(u["gqi"], digits=1),
        f"{seconds:.0f}" if seconds is not None else "-",
    ]


HEADER = [
    "scenario",
    "generator",
    "verdict",
    "precision (ref)",
    "coverage (ref)",
    "copy%",
    "memor. z",
    "SWD (ref)",
    "KID (ref)",
    "real_aug",
    "mixed_aug",
    "oracle",
    "credit pp [95%]",
    "oracle credit pp [95%]",
    "GQI (chance-corr.)",
    "train s",
]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for r in [HEADER, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train/<class> and test/<class>")
    parser.add_argument("--class", dest="target", default="sandal")
    parser.add_argument("--generators", default="dcgan,ddim", help="generator types, comma-separated")
    parser.add_argument("--scenarios", default="full,small,small+aug", help="any of full, small, small+aug")
    parser.add_argument("--full", type=int, default=500, help="image count of the full scenario")
    parser.add_argument("--small", type=int, default=150, help="image count of the cut scenarios")
    parser.add_argument("--augment-copies", type=int, default=3, help="augmented copies per image in 150+aug")
    parser.add_argument("--references", default="real", help="reference rows: real, noise (comma-separated) or ''")
    parser.add_argument("--resolution", type=int, default=32, help="generator resolution (28 px images are resized)")
    parser.add_argument("--preset", default="quick")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="[KIND.]KEY=VALUE",
        help="override a generator config value (for every kind, or only KIND's)",
    )
    parser.add_argument(
        "--samples", type=float, default=1.25, help="images to generate, as a multiple of the training count"
    )
    parser.add_argument("--seeds", default="0,1,2", help="usefulness-test seeds")
    parser.add_argument("--gen-seed", type=int, default=0, help="generator training seed")
    parser.add_argument("--negatives-per-class", type=int, default=150)
    parser.add_argument(
        "--negatives",
        choices=("classes", "merged"),
        default="classes",
        help="the other classes as classes of their own, or merged into one 'not this class' set",
    )
    parser.add_argument(
        "--more-test",
        action="store_true",
        help="the training images no row uses join the test sets (needs no 'full' scenario)",
    )
    parser.add_argument("--images-dir", type=Path, default=None, help="keep generated images (and a grid) here")
    parser.add_argument("--reuse", action="store_true", help="read generated images from --images-dir, if there")
    parser.add_argument("--classifier-steps", type=int, default=ClassifierSettings.steps)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write every report here")
    args = parser.parse_args(argv)
    if args.reuse and not args.images_dir:
        parser.error("--reuse needs --images-dir")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    settings = ClassifierSettings(steps=args.classifier_steps, device=device)
    overrides: dict[str, dict] = {}
    for key, value in parse_overrides(args.set).items():
        kind, _, name = key.rpartition(".")
        overrides.setdefault(kind, {})[name] = value

    started = time.perf_counter()
    more_test_from = None
    if args.more_test:
        if "full" in args.scenarios.split(","):
            parser.error("--more-test needs the class's training images the 'full' scenario trains on")
        more_test_from = (
            3 if "real" in args.references.split(",") else 2
        ) * args.small  # after train, oracle, stand-in
    data = load_data(
        args.data, args.target, args.resolution, args.negatives_per_class, args.negatives == "merged", more_test_from
    )
    known = {
        "full": Scenario(str(args.full), args.full),
        "small": Scenario(str(args.small), args.small),
        "small+aug": Scenario(f"{args.small}+aug", args.small, args.augment_copies),
    }
    scenarios = [known[s] for s in args.scenarios.split(",") if s]
    print(
        f"class {args.target} vs {len(data.class_names) - 1} others, {args.resolution} px, device {device}, "
        f"preset {args.preset}, overrides {overrides or 'none'}, usefulness seeds {seeds}, "
        f"classifier steps {settings.steps}, negatives {args.negatives_per_class}/class, "
        f"test images {len(data.target_test)} + {sum(len(t) for t in data.negatives_test)}",
        flush=True,
    )

    def report_for(generated, scenario: Scenario, extra_real):
        return quality_report(
            generated=generated,
            train=data.target_train[: scenario.count],
            heldout=data.target_test,
            negatives=data.negatives_train,
            negatives_heldout=data.negatives_test,
            extra_real=extra_real,
            seeds=seeds,
            settings=settings,
        )

    rows, reports = [], []

    def record(scenario_name: str, generator: str, report: dict, seconds: float | None = None, **extra) -> None:
        """Print the row now and rewrite the JSON file, so a run cut short keeps what it measured."""
        rows.append(row(scenario_name, generator, report, seconds))
        reports.append(
            {"scenario": scenario_name, "generator": generator, "train_seconds": seconds, **extra, "report": report}
        )
        print_table(rows[-1:])
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(reports, indent=1))

    for scenario in scenarios:
        train = data.target_train[: scenario.count]
        extra = data.target_train[scenario.count : 2 * scenario.count]
        extra = extra if len(extra) == scenario.count else None  # the oracle needs as many more real images
        n_samples = math.ceil(args.samples * scenario.count)
        references = [r for r in args.references.split(",") if r] if scenario.augment == 0 else []
        if "real" in references and scenario.count * 3 <= len(data.target_train):
            stand_in = data.target_train[2 * scenario.count : 3 * scenario.count]
            record(scenario.name, "real-as-generated", report_for(stand_in, scenario, extra))
        if "noise" in references:
            g = torch.Generator().manual_seed(0)
            noise = torch.randint(0, 256, (n_samples, *train.shape[1:]), generator=g, dtype=torch.uint8)
            record(scenario.name, "noise", report_for(noise, scenario, extra))
        for kind in [k for k in args.generators.split(",") if k]:
            kept = args.images_dir / f"{scenario.name}_{kind}.safetensors" if args.images_dir else None
            if args.reuse and kept.exists():
                generated, seconds, warnings = load_tensors(kept)["images"], None, ["images reused"]
                if len(generated) < n_samples:
                    raise SystemExit(
                        f"{kept} holds {len(generated)} images, fewer than the {n_samples} this run "
                        "needs (lower --samples, or leave out --reuse)"
                    )
                generated = generated[:n_samples]
            else:
                generated, seconds, warnings = train_and_sample(
                    kind,
                    train,
                    count=scenario.count,
                    augment=scenario.augment,
                    samples=n_samples,
                    seed=args.gen_seed,
                    preset=args.preset,
                    overrides={**overrides.get("", {}), **overrides.get(kind, {})},
                    device=device,
                )
                if kept:
                    save_tensors_atomic({"images": generated.contiguous()}, kept)
                    save_grid(generated[:64], kept.with_suffix(".png"), columns=8)
            record(scenario.name, kind, report_for(generated, scenario, extra), seconds, warnings=warnings)

    print(
        f"\nall rows ({time.perf_counter() - started:.0f} s in total); accuracies are balanced over "
        f"{len(data.class_names)} classes, mean±std over seeds {seeds}; (ref) = new real photos at the same size"
    )
    print_table(rows)
    if args.json:
        print(f"reports written to {args.json}")


if __name__ == "__main__":
    main()
