"""A long-tail test that can see a gain (#19): do SynthGen's generated images help the tail classes?

Fashion-MNIST at 32 px grey from ``--data`` (``../shared/datasets/fashion-mnist``): every class's first
``--head`` training photos (500, sorted by name), except the tail classes (``--tails``: sandal, shirt,
bag), cut to their first ``--tail`` (30, the headline design; 150 the second). Test: every photo of
``more/<class>`` (2,000 unseen photos a class) plus ``test/<class>`` (100). The oracle's extra photos
are the tail classes' training photos ``tail .. head``.

Validation: a fixed 20 % of every class's training photos (at least 2) is set aside, in every arm, for
early stopping (and for the class filter's calibration); the classifiers train on the rest.

The generator is the product's own: ONE class-conditional DDIM trained on every training photo with its
label, with the config the app builds for this dataset (``build_config`` with the photos' orientation and
class counts, preset quick, ``--gen-set KEY=VALUE`` overrides, e.g. a shorter training on a CPU); the
guidance the app would choose (:func:`apps.ml.quality.guidance.choose_guidance`, on a validation split of the
training photos); images delivered as the app delivers them (:func:`apps.ml.quality.filtering.generate_filtered`:
the noise / blank / copy filter, copy limits per class at the 1 % quantile's upper confidence bound
(``--copy-filter by-class-estimate``: its estimate, as before; ``pooled``: one set for every class, as before
that), and the class filter of :mod:`apps.ml.quality.class_filter`, trained on the
classifier-training photos and calibrated on the validation photos). Each tail class gets ``head - tail``
images, as many as the oracle's extra photos.

Classifier arms (the usefulness test's SmallCNN, early stopping on the validation photos' balanced
accuracy, ``--seeds`` paired seeds; every arm sees the same photos, seeds and validation split):

- ``real``:          photos, no augmentation, images drawn uniformly (classes at natural frequencies);
- ``real_aug``:      + the usefulness test's augmentation (no mirror images for one-way photos);
- ``real_aug_bal``:  + class-balanced sampling (oversampling of the tails);
- ``real_aug_la``:   augmentation with logit-adjusted loss (Menon et al. 2021, tau 1), natural frequencies;
- ``oracle``:        the best of those four with the tails filled to ``head`` with real photos;
- ``gen_w1``:        the best baseline with the tails filled with generated images, each weighted 1
                     (the zip dropped into an ImageFolder as it is);
- ``gen_wW``:        the same with generated images weighted ``W`` in the loss (``--weights``);
- ``fromheads_gen_*``: (``--base-on-heads``, #20) the same, the generator fine-tuned as the app does from a
                     base trained on the head classes alone (``--base-set`` overrides the base's config);
- ``app_gen_*``:     (``--delivered ZIP``) the same with the tails' images of a generation job the app made
                     (e.g. through its API: the zip's class folders, in file order), no generator trained here;
- ``cuda_gen_*``:    (``--device cuda``) the generator trained and sampled on a GPU with the config the app
                     builds there; classifiers and scores stay on the CPU.

Scores: balanced accuracy on the whole test set and each tail class's recall. ``credit`` of an arm =
its balanced accuracy - the best baseline's, with the usefulness test's paired bootstrap 95 % interval
(seeds and test images redrawn). The table also prints the smallest effect the test can detect
(about 2.8 x the standard error of a paired difference, from the baselines' spread over seeds).
Target (#19): the recommended generated arm's credit >= half the oracle's, with an interval above zero,
and <= 2 % flip-aware near-copies per tail class.

Everything expensive is cached under ``--out`` (the model, the images, each arm's per-seed results).

    OMP_NUM_THREADS=1 .venv/bin/python bench/longtail.py --threads 1 --gen-set total_steps=8000
    OMP_NUM_THREADS=1 .venv/bin/python bench/longtail.py --threads 1 --tail 150 --skip-generator  # real arms only
    OMP_NUM_THREADS=1 .venv/bin/python bench/longtail.py --threads 1 --smoke   # a code check, about a minute
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import statistics
import sys
import time
import zipfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `apps`

from apps.ml.engine import registry  # noqa: E402
from apps.ml.engine.config import build_config  # noqa: E402
from apps.ml.engine.images import save_grid, to_uint8  # noqa: E402
from apps.ml.engine.orientation import measure  # noqa: E402
from apps.ml.quality import filtering  # noqa: E402
from apps.ml.quality.class_filter import train_class_filter  # noqa: E402
from apps.ml.quality.classifier import ClassifierSettings, predict, train_classifier  # noqa: E402
from apps.ml.quality.copies import build_reference, calibrate, detect  # noqa: E402
from apps.ml.quality.guidance import CRITERION as GUIDANCE_CRITERION  # noqa: E402
from apps.ml.quality.guidance import choose_guidance  # noqa: E402
from apps.ml.quality.usefulness import credit  # noqa: E402
from bench.balance import _digest, _pp, print_table, sample_cached, train_generator  # noqa: E402
from bench.faithful import BLACK, background, other_way_share  # noqa: E402
from bench.quality import DEFAULT_DATA  # noqa: E402
from bench.quick_preset import load_folder, parse_overrides  # noqa: E402
from bench.transfer import train_labelled_base  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "longtail"
TAILS = ("sandal", "shirt", "bag")
VALIDATION = 0.2
SPLIT_SEED = 1234


# --------------------------------------------------------------------------- data


def load_data(root: Path, tails: list[str], tail: int, head: int, resolution: int, test_limit: int | None) -> dict:
    """uint8 images: per class ``fit`` (classifier training), ``val`` (early stopping), ``photos`` (both),
    ``extra`` (the oracle's, tails only) and ``test`` (more/ + test/)."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    out = {"classes": classes, "fit": [], "val": [], "photos": [], "extra": {}, "test": []}
    for i, name in enumerate(classes):
        images = to_uint8(load_folder(root / "train" / name, resolution, head))
        photos = images[:tail] if name in tails else images
        if name in tails:
            out["extra"][name] = images[tail:head]
        order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(SPLIT_SEED + i))
        n_val = max(2, round(VALIDATION * len(photos)))
        out["val"].append(photos[order[:n_val]])
        out["fit"].append(photos[order[n_val:]])
        out["photos"].append(photos)
        test = [
            to_uint8(load_folder(root / split / name, resolution, test_limit))
            for split in ("more", "test")
            if (root / split / name).is_dir()
        ]
        out["test"].append(torch.cat(test))
    return out


# --------------------------------------------------------------------------- generated images


def generated_images(args, data: dict, tails: list[str], out: Path, results: dict) -> dict[str, torch.Tensor]:
    """The tails' generated images, as the app makes and delivers them (cached under ``out``)."""
    ddim = registry.get("ddim")
    classes, photos = data["classes"], data["photos"]
    images = torch.cat(photos)
    labels = torch.repeat_interleave(torch.arange(len(photos)), torch.tensor([len(p) for p in photos]))
    orientation = measure(images, labels, classes).as_dict()
    base = None
    if args.base_on_heads:  # #20: the product's fine-tuning path, from a registry generator of the heads
        base, results["base"] = heads_base(args, data, tails, out)
    config = build_config(
        ddim,
        resolution=args.resolution,
        channels=images.shape[1],
        preset="quick",
        image_count=len(images),
        device=args.device,
        classes=classes,
        class_counts=[len(p) for p in photos],
        orientation=orientation,
        overrides=parse_overrides(args.gen_set),  # as the operator's: before a base's fine-tuning recipe
        options={"seed": args.seed},
        base=base.recipe_config() if base else None,
    )
    print(
        f"conditional DDIM{' fine-tuned from the heads base' if base else ''}: {config['total_steps']} steps of "
        f"{config['batch_size']} (overrides {args.gen_set or 'none'}); mirrors {orientation['mirrors']}",
        flush=True,
    )
    model, timing = train_generator(
        out / f"{prefix(args)}generator",
        config,
        images,
        labels,
        "generator",
        args.retrain,
        base=base,
        device=args.device,
    )
    if args.train_only:
        raise SystemExit(0)
    results["generator"] = {
        "timing": timing,
        "overrides": args.gen_set,
        "orientation_mirrors": orientation["mirrors"],
        "config": {
            k: config[k]
            for k in (
                "total_steps",
                "batch_size",
                "learning_rate",
                "class_balanced",
                "augment_p",
                "augment_flip",
                "hflip",
                "architecture_version",
                "guidance_scale",
            )
        },
    }
    guidance_file = out / f"{prefix(args)}generator" / "guidance.json"
    saved = json.loads(guidance_file.read_text()) if guidance_file.exists() else {}
    if args.guidance is not None:
        chosen = {"guidance": args.guidance, "chosen_by": "--guidance"}
    elif saved.get("criterion") == GUIDANCE_CRITERION:  # chosen before, the same way
        chosen = saved
    else:  # as the app's evaluate stage: its report's classifier, mirror images only where the photos show them
        started = time.perf_counter()
        chosen = choose_guidance(
            model,
            images,
            labels,
            per_class=args.guidance_per_class,
            classifier_settings=ClassifierSettings(mirror=bool(orientation["mirrors"])),
        )
        chosen["seconds"] = round(time.perf_counter() - started, 1)
        guidance_file.write_text(json.dumps(chosen, indent=1))
    guidance = float(chosen["guidance"])
    results["guidance"] = chosen
    print(
        f"guidance {guidance:g} ({chosen.get('chosen_by', 'chosen on a validation split of the training photos')})",
        flush=True,
    )

    fit, val = data["fit"], data["val"]
    fit_labels = torch.repeat_interleave(torch.arange(len(fit)), torch.tensor([len(f) for f in fit]))
    val_labels = torch.repeat_interleave(torch.arange(len(val)), torch.tensor([len(v) for v in val]))
    class_filter = train_class_filter(
        torch.cat(fit), fit_labels, torch.cat(val), val_labels, classes=len(classes), seed=0
    )
    if args.no_filter:
        references = None
    elif args.copy_filter == "pooled":  # before: one set of copy limits for every class
        references = dict.fromkeys(range(len(classes)), filtering.build_reference(images))
    elif args.copy_filter == "by-class-estimate":  # before: per class, the 1 % quantile's estimate as the limits
        references = filtering.build_class_references(images, labels, len(classes), confidence=None)
    else:  # the product: each class's copies looked for among its own photos, by its own (bounded) limits
        references = filtering.build_class_references(images, labels, len(classes))
    results["class_filter"] = class_filter.describe(classes)
    generated, results["delivery"] = {}, {}
    wanted = {c: args.head - args.tail for c in tails} | {
        c: args.every for c in classes if c not in tails and args.every
    }
    for c, need in wanted.items():
        label = classes.index(c)
        key = (
            f"{timing['steps']}-{config['seed']}-{c}-{need}-g{guidance}-filter{not args.no_filter}"
            + {
                "pooled": "",
                "by-class-estimate": "-copies-by-class",
                "by-class": "-copies-by-class-bound",
            }[args.copy_filter]
        )
        report = {}

        def make(label=label, need=need, report=report):
            batch = filtering.generate_filtered(
                lambda n, seed: model.sample(n, seed=seed, labels=label, guidance=guidance),
                need,
                references[label] if references else None,
                seed=args.seed,
                chunk=label,
                class_check=lambda batch_images, label=label: class_filter.check(batch_images, label),
            )
            report.update(dropped=batch.dropped, generated=batch.generated, shortfall=batch.shortfall)
            return batch.images if len(batch.images) else torch.empty(0, *images.shape[1:], dtype=torch.uint8)

        stem = (
            f"{prefix(args)}{c}_g{guidance:g}"
            + (f"_n{need}" if c not in tails else "")
            + {"pooled": "_pooled", "by-class-estimate": "_estimate", "by-class": ""}[args.copy_filter]
        )
        imgs, seconds = sample_cached(out / "samples" / f"{stem}.safetensors", make, key)
        generated[c] = imgs
        if report:
            report["seconds"] = round(seconds, 1)
            (out / "samples" / f"{stem}.json").write_text(json.dumps(report))
        saved = out / "samples" / f"{stem}.json"
        results["delivery"][c] = json.loads(saved.read_text()) if saved.exists() else {}
        print(f"  {c}: {len(imgs)} images {results['delivery'][c]}", flush=True)
    return generated


def delivered_images(path: Path, tails: list[str], resolution: int, out: Path) -> dict[str, torch.Tensor]:
    """The tails' images from a generation job's zip (or the folder it unpacks to) as the app delivered them
    through its API: a folder per class next to ``metadata.jsonl``; each class's images in file order."""
    if path.suffix == ".zip":
        unpacked = out / "delivered" / path.stem
        if not unpacked.exists():
            with zipfile.ZipFile(path) as archive:
                archive.extractall(unpacked)
        path = unpacked
    found = sorted(path.rglob("metadata.jsonl"))
    if not found:
        raise SystemExit(f"{path}: no metadata.jsonl, so not a SynthGen generation zip")
    folder = found[0].parent
    missing = [c for c in tails if not (folder / c).is_dir()]
    if missing:
        raise SystemExit(f"{folder}: no images of {', '.join(missing)}")
    return {c: to_uint8(load_folder(folder / c, resolution)) for c in tails}


def prefix(args) -> str:
    """What tells the app's delivered images, a generator trained on a GPU, or one fine-tuned from the heads, from
    the one trained here from scratch on the CPU (in file and arm names)."""
    if args.delivered:
        return "app_"
    on = "" if args.device == "cpu" else f"{args.device.split(':')[0]}_"
    return on + ("fromheads_" if args.base_on_heads else "")


def heads_base(args, data: dict, tails: list[str], out: Path) -> tuple:
    """The registry's base for #20's tail arm: a conditional DDIM on the head classes' photos alone, with the
    config the app builds for that dataset (``--base-set`` overrides; cached). Returns (Base, what to record)."""
    heads = [c for c in data["classes"] if c not in tails]
    per_class = [p for c, p in zip(data["classes"], data["photos"]) if c not in tails]
    base, timing, _ = train_labelled_base(
        per_class,
        heads,
        seed=args.seed,
        overrides=args.base_set,
        directory=out / "base_heads",
        retrain=args.retrain,
        tag="heads base",
    )
    return base, {"classes": heads, "timing": timing, "overrides": args.base_set}


def copy_shares(data: dict, generated: dict[str, torch.Tensor], results: dict) -> None:
    """Per tail class: flip- and shift-aware near-copies of its own photos among its generated images, and (as
    bench/faithful.py measures them, #18) the share facing the other way and the background, next to unseen
    photos'."""
    results["copies"], results["faithful"] = {}, {}
    for c, imgs in generated.items():
        if c not in results["tails"]:
            continue
        if not len(imgs):
            results["copies"][c] = {"share": 0.0, "count": 0, "of": 0}
            continue
        i = data["classes"].index(c)
        reference = build_reference(data["photos"][i])
        thresholds = calibrate(data["photos"][i], heldout=data["test"][i][:200])
        found = detect(imgs, reference, thresholds)
        results["copies"][c] = {"share": round(found["share"], 4), "count": found["count"], "of": len(imgs)}
        unseen = data["test"][i]
        mean = unseen.float().div(255).mean(0)
        mask = ((unseen <= BLACK).float().mean(0) >= 0.9)[0]
        new = unseen[-len(imgs) :]
        results["faithful"][c] = {
            "other_way": {"generated": other_way_share(imgs, mean), "unseen": other_way_share(new, mean)},
            "background": {
                "generated": background(imgs, mask),
                "unseen": background(new, mask),
                "pixels": int(mask.sum()),
            },
        }


# --------------------------------------------------------------------------- arms


def run_arm(
    name: str,
    class_images: list[torch.Tensor],
    weights: list[torch.Tensor] | None,
    data: dict,
    seeds: list[int],
    settings: ClassifierSettings,
    cache_dir: Path,
    class_counts: list[int] | None = None,
) -> dict:
    """Per seed: balanced accuracy, per-test-image correctness and the steps early stopping kept (cached; several
    processes running the same arm share its seeds)."""
    test = data["test"]
    signature = {
        "settings": asdict(settings),
        "train": _digest(*class_images),
        "weights": _digest(*weights) if weights else None,
        "val": _digest(*data["val"]),
        "test": _digest(*test),
    }
    if class_counts is not None:
        signature["class_counts"] = class_counts
    signature = json.dumps(signature, sort_keys=True)
    cache = cache_dir / f"{name}.json"
    cache_dir.mkdir(parents=True, exist_ok=True)

    def load() -> dict:
        saved = json.loads(cache.read_text()) if cache.exists() else {}
        return saved if saved.get("signature") == signature else {"signature": signature, "runs": {}}

    started = time.perf_counter()
    for seed in seeds:
        claim = cache_dir / f"{name}.seed{seed}.claim"
        if str(seed) in load()["runs"] or not _claim(claim):
            continue  # done, or another process is training it: its result is awaited below
        try:
            _train_seed(name, class_images, weights, data, seed, settings, class_counts, load, cache)
        finally:
            claim.unlink(missing_ok=True)
    saved = _await_seeds(load, cache_dir, name, seeds)
    runs = [saved["runs"][str(s)] for s in seeds]
    return {
        "scores": [r["score"] for r in runs],
        "correct": [[torch.tensor(c) for c in r["correct"]] for r in runs],
        "best_steps": [r["best_step"] for r in runs],
        "counts": [len(c) for c in class_images],
        "seconds": round(sum(r["seconds"] for r in runs), 1),
        "new_seconds": round(time.perf_counter() - started, 1),
    }


def _claim(claim: Path) -> bool:
    """Take a seed of an arm for this process (a file holding its pid), unless a live process holds it: so that
    several processes running the same arms share the seeds instead of training them twice."""
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(claim.read_text() or 0), 0)
            return False  # its holder is alive
        except (ProcessLookupError, ValueError, FileNotFoundError):
            claim.unlink(missing_ok=True)  # its holder died: take it over
            return _claim(claim)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _await_seeds(load, cache_dir: Path, name: str, seeds: list[int]) -> dict:
    """The arm's results once every seed is there (seeds other processes claimed are waited for)."""
    while True:
        saved = load()
        missing = [s for s in seeds if str(s) not in saved["runs"]]
        if not missing:
            return saved
        if not any((cache_dir / f"{name}.seed{s}.claim").exists() for s in missing):
            raise SystemExit(f"arm {name}: seeds {missing} were claimed and not finished: run it again")
        time.sleep(15)


def _train_seed(name, class_images, weights, data, seed, settings, class_counts, load, cache) -> None:
    """Train one seed's classifier, score it on the test photos, and add it to the arm's cache."""
    t0 = time.perf_counter()
    model = train_classifier(
        class_images,
        seed=seed,
        settings=settings,
        weights=weights,
        validation=data["val"],
        class_counts=class_counts,
    )
    hits = [
        predict(model, images, image_size=settings.image_size) == label for label, images in enumerate(data["test"])
    ]
    score = statistics.fmean(h.double().mean().item() for h in hits)
    result = {
        "score": score,
        "correct": [h.tolist() for h in hits],
        "best_step": model.best_step,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(
        f"  arm {name} seed {seed}: balanced accuracy {score:.4f}, kept step {model.best_step} "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    with open(cache.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # re-read and write under a lock: other processes add their seeds too
        saved = load()
        saved["runs"][str(seed)] = result
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(saved))
        partial.replace(cache)


def print_delivery(results: dict) -> None:
    """The delivered tail images: near-copies, the share facing the other way and the background."""
    print(
        "near-copies: "
        + ", ".join(f"{c} {v['share'] * 100:.1f}% ({v['count']}/{v['of']})" for c, v in results["copies"].items())
    )
    print(
        "facing the other way (generated / unseen), background mean /255 (generated / unseen): "
        + ", ".join(
            f"{c} {v['other_way']['generated'] * 100:.1f} / {v['other_way']['unseen'] * 100:.1f} %, "
            f"{v['background']['generated']['mean']:.1f} / {v['background']['unseen']['mean']:.1f}"
            for c, v in results["faithful"].items()
        )
    )


def detectable_effect(runs: dict, arms: list[str]) -> float:
    """The smallest difference (in accuracy) a paired comparison of two such arms resolves at 95 % with
    80 % power: (1.96 + 0.84) x the standard error of a paired mean difference, the per-seed spread taken
    from the pairs of baselines."""
    diffs = []
    for i, a in enumerate(arms):
        for b in arms[i + 1 :]:
            d = [x - y for x, y in zip(runs[a]["scores"], runs[b]["scores"])]  # the seeds both ran
            if len(d) > 1:
                diffs.append(statistics.stdev(d))
    if not diffs:
        return float("nan")
    n = max(len(runs[a]["scores"]) for a in arms)  # the seeds every compared arm runs
    return 2.8 * statistics.fmean(diffs) / math.sqrt(n)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None, help=f"cache and results (default {DEFAULT_OUT}/tailN)")
    parser.add_argument("--tails", default=",".join(TAILS))
    parser.add_argument("--tail", type=int, default=30)
    parser.add_argument("--head", type=int, default=500)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--seeds", default=",".join(str(s) for s in range(10)))
    parser.add_argument(
        "--selection-seeds",
        type=int,
        default=5,
        help="the real baselines are compared on the first N seeds; the best runs them all",
    )
    parser.add_argument("--max-steps", type=int, default=2000, help="classifier steps at most (early stopping)")
    parser.add_argument("--check-every", type=int, default=200)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--weights", default="0.5", help="loss weights of generated images, besides 1")
    parser.add_argument(
        "--gen-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the generator's config (e.g. total_steps=8000)",
    )
    parser.add_argument("--guidance", type=float, default=None, help="instead of the app's choice")
    parser.add_argument("--guidance-per-class", type=int, default=64)
    parser.add_argument("--no-filter", action="store_true", help="deliver the images unfiltered")
    parser.add_argument(
        "--copy-filter",
        default="by-class",
        choices=("by-class", "by-class-estimate", "pooled"),
        help="copy limits per class, the 1 %% quantile's upper confidence bound (the product); per class, its "
        "estimate (before); or one set for every class (before that)",
    )
    parser.add_argument("--fill", type=int, default=None, help="generated images per tail class (default: head - tail)")
    parser.add_argument("--every", type=int, default=0, help="generated images for every other class too")
    parser.add_argument(
        "--real-prior",
        action="store_true",
        help="logit adjustment by the real photos' class counts, not counting generated images",
    )
    parser.add_argument("--skip-generator", action="store_true", help="the real arms and the oracle only")
    parser.add_argument("--train-only", action="store_true", help="train the generator, then stop")
    parser.add_argument(
        "--delivery-only",
        action="store_true",
        help="train, deliver and measure the tails' images (copies, orientation, background), then stop",
    )
    parser.add_argument(
        "--arms",
        default="",
        help="of the oracle and the generated arms, run only these (comma-separated; the real baselines always run)",
    )
    parser.add_argument(
        "--base-on-heads",
        action="store_true",
        help="#20: fine-tune the generator from a base trained on the head classes alone (files and arms 'fromheads_')",
    )
    parser.add_argument(
        "--base-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the heads base's config (e.g. total_steps=4000)",
    )
    parser.add_argument(
        "--baselines",
        default="",
        help="compare only these real baselines (comma-separated; default all four), e.g. after a full comparison",
    )
    parser.add_argument(
        "--delivered",
        type=Path,
        default=None,
        help="the tails' images from a generation job's zip made by the app (e.g. through the API; arms 'app_')",
    )
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="generator training and sampling seed")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--device",
        default="cpu",
        help="train and sample the generator here (cuda: the config the app builds for a GPU); classifiers: CPU",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tails at 6, heads at 20, 2 seeds, tiny classifiers and generator: a code check",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    test_limit = None
    if args.smoke:
        args.tail, args.head, args.seeds, args.max_steps, args.check_every = 6, 20, "0,1", 60, 20
        args.gen_set = ["total_steps=20", "checkpoint_every=10", "grid_images=4", "base_channels=8", *args.gen_set]
        args.guidance_per_class, test_limit = 4, 20
        args.no_filter = True  # an untrained generator's images are noise: the filter would drop them all
        args.base_set = ["total_steps=20", "checkpoint_every=10", "grid_images=4", "base_channels=8", *args.base_set]
        args.out = args.out or DEFAULT_OUT.with_name("longtail_smoke")
    out = args.out or DEFAULT_OUT / f"tail{args.tail}"
    out.mkdir(parents=True, exist_ok=True)
    tails = [c for c in args.tails.split(",") if c]
    seeds = [int(s) for s in args.seeds.split(",")]
    weights = [float(w) for w in args.weights.split(",") if w]
    started = time.perf_counter()

    data = load_data(args.data, tails, args.tail, args.head, args.resolution, test_limit)
    classes = data["classes"]
    missing = [c for c in tails if c not in classes]
    if missing:
        raise SystemExit(f"no such class: {', '.join(missing)} (classes: {', '.join(classes)})")
    mirrors = measure(
        torch.cat(data["photos"]),
        torch.repeat_interleave(torch.arange(len(classes)), torch.tensor([len(p) for p in data["photos"]])),
        classes,
    ).mirrors
    base = ClassifierSettings(
        steps=args.max_steps, mirror=mirrors, check_every=args.check_every, patience=args.patience
    )
    print(
        f"{len(classes)} classes at {args.resolution} px; training photos "
        f"{', '.join(f'{c} {len(f)}+{len(v)}' for c, f, v in zip(classes, data['fit'], data['val']))} (fit+val); "
        f"{sum(len(t) for t in data['test'])} test images; seeds {seeds}; mirrors in augmentation: {mirrors}",
        flush=True,
    )
    results: dict = {
        "classes": classes,
        "tails": tails,
        "tail": args.tail,
        "head": args.head,
        "test_images": [len(t) for t in data["test"]],
        "classifier": asdict(base),
        "seeds": seeds,
        "arms": {},
    }
    if args.delivered:
        generated = delivered_images(args.delivered, tails, args.resolution, out)
        results["delivered"] = str(args.delivered)
    else:
        generated = {} if args.skip_generator else generated_images(args, data, tails, out, results)
    if generated:
        copy_shares(data, generated, results)
    if args.delivery_only:
        print_delivery(results)
        return

    baselines = {
        "real": replace(base, augment=False, class_balanced=False),
        "real_aug": replace(base, augment=True, class_balanced=False),
        "real_aug_bal": replace(base, augment=True, class_balanced=True),
        "real_aug_la": replace(base, augment=True, class_balanced=False, logit_adjust=1.0),
    }
    if args.baselines:
        unknown = set(args.baselines.split(",")) - set(baselines)
        if unknown:
            raise SystemExit(f"no such baseline: {', '.join(sorted(unknown))} (baselines: {', '.join(baselines)})")
        baselines = {a: baselines[a] for a in args.baselines.split(",")}
    only = {a for a in args.arms.split(",") if a}
    fit = data["fit"]
    runs: dict[str, dict] = {}
    selection = seeds[: args.selection_seeds]  # the baselines are compared on these; the best then runs every seed
    for arm, settings in baselines.items():  # always (cached after the first run): the best one is needed
        runs[arm] = run_arm(arm, fit, None, data, selection, settings, out / "arms")
    best = max(baselines, key=lambda a: statistics.fmean(runs[a]["scores"]))
    if len(selection) < len(seeds):
        runs[best] = run_arm(best, fit, None, data, seeds, baselines[best], out / "arms")
    best_settings = baselines[best]
    filled = {"oracle": ([torch.cat([f, data["extra"][c]]) if c in tails else f for c, f in zip(classes, fit)], None)}
    if generated:
        # --fill N: the tails get N generated images (the first N); --every N: every other class gets N too, so
        # that looking generated no longer says "tail class"
        used = {c: imgs[: args.fill] if c in tails and args.fill is not None else imgs for c, imgs in generated.items()}
        gen_fit = [torch.cat([f, used[c]]) if c in used else f for c, f in zip(classes, fit)]
        for w in [1.0, *weights]:
            per_image = [
                torch.cat([torch.ones(len(f)), torch.full((len(used[c]),), w)]) if c in used else torch.ones(len(f))
                for c, f in zip(classes, fit)
            ]
            # a recipe other than the default says so in the arm's name (gen_g3_every100_fill100_w1)
            at = (
                (f"g{args.guidance:g}_" if args.guidance is not None else "")
                + (f"every{args.every}_" if args.every else "")
                + (f"fill{args.fill}_" if args.fill is not None else "")
                + ("realprior_" if args.real_prior else "")
            )
            filled[f"{prefix(args)}gen_{at}w{w:g}"] = (gen_fit, per_image if w != 1.0 else None)
    real_counts = [len(f) for f in fit]
    for arm, (class_images, per_image) in filled.items():
        if not only or arm in only:
            counts = real_counts if "gen_" in arm and args.real_prior and best_settings.logit_adjust else None
            runs[arm] = run_arm(
                f"{arm}_{best}", class_images, per_image, data, seeds, best_settings, out / "arms", class_counts=counts
            )

    tail_idx = [classes.index(c) for c in tails]
    for arm, run in runs.items():
        recalls = {
            c: statistics.fmean(hits[i].double().mean().item() for hits in run["correct"])
            for c, i in zip(tails, tail_idx)
        }
        entry = {
            "counts": run["counts"],
            "seeds": len(run["scores"]),
            "balanced_accuracy": {
                "value": statistics.fmean(run["scores"]),
                "std": statistics.stdev(run["scores"]) if len(run["scores"]) > 1 else 0.0,
                "per_seed": run["scores"],
            },
            "tail_recall": recalls,
            "kept_steps": run["best_steps"],
            "classifier_seconds": run["seconds"],
            "settings": best if arm not in baselines else arm,
        }
        if arm != best:  # paired on the seeds both ran (a baseline that lost the selection ran fewer)
            k = min(len(run["scores"]), len(runs[best]["scores"]))
            entry["credit_over_best_baseline"] = credit(
                run["correct"][:k],
                runs[best]["correct"][:k],
                [a - b for a, b in zip(run["scores"][:k], runs[best]["scores"][:k])],
            )
            entry["credit_over_best_baseline"]["seeds"] = k
        results["arms"][arm] = entry
    results["best_baseline"] = best
    results["detectable_effect"] = detectable_effect(runs, [a for a in baselines if a in runs])
    oracle = results["arms"].get("oracle", {}).get("credit_over_best_baseline")
    results["verdict"] = {}
    for arm in (a for a in runs if "gen_" in a):
        cr = results["arms"][arm]["credit_over_best_baseline"]
        copies = max(v["share"] for v in results["copies"].values())
        results["verdict"][arm] = {
            "credit_ge_half_oracle": bool(oracle and cr["value"] >= 0.5 * oracle["value"]),
            "interval_above_zero": cr["low"] > 0,
            "copies_le_2pct": copies <= 0.02,
            "max_copy_share": copies,
        }
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    for c, imgs in generated.items():
        if len(imgs):
            save_grid(imgs[:64], out / f"generated_{c}.png", columns=8)

    print(
        f"\nbest real baseline: {best} (chosen on seeds {selection}); balanced accuracy in % (mean ± std over "
        f"the seeds each arm ran: {len(selection)} for the other baselines, {len(seeds)} for the rest) on "
        f"{sum(results['test_images'])} test images; credit in points over {best} [95 % paired bootstrap]; "
        f"smallest detectable effect about {results['detectable_effect'] * 100:.2f} pp"
    )
    header = ["arm", "balanced acc", *[f"{c} recall" for c in tails], "credit pp [95%]", "kept steps (median)"]
    rows = []
    for arm, entry in results["arms"].items():
        ba = entry["balanced_accuracy"]
        rows.append(
            [
                arm,
                f"{ba['value'] * 100:.2f} ± {ba['std'] * 100:.2f}",
                *[f"{entry['tail_recall'][c] * 100:.1f}" for c in tails],
                "(baseline)" if arm == best else _pp(entry.get("credit_over_best_baseline")),
                f"{statistics.median(entry['kept_steps']):.0f}",
            ]
        )
    print_table(header, rows)
    if generated:
        print_delivery(results)
    for arm, v in results["verdict"].items():
        cr = results["arms"][arm]["credit_over_best_baseline"]
        if not oracle:
            continue
        print(
            f"{arm}: credit {cr['value'] * 100:+.2f} pp vs oracle {oracle['value'] * 100:+.2f} pp -> half-oracle "
            f"{'met' if v['credit_ge_half_oracle'] else 'MISSED'}, interval above zero "
            f"{'yes' if v['interval_above_zero'] else 'NO'}, copies max {v['max_copy_share'] * 100:.1f}%"
        )
    print(f"results: {out / 'results.json'} ({results['total_seconds']:.0f} s this run)")


if __name__ == "__main__":
    main()
