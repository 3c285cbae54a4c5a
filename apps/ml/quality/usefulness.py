"""The usefulness test: do generated images help a classifier learn the class?

The study's test, made automatic. A small CNN learns to tell the generated
class apart from other classes (the user's other classes, or a "not this
class" set) and is scored on held-out *real* images. It is trained several
ways, which differ only in the images of the generated class and in whether
the training images are augmented:

- ``real``:      the real training images;
- ``synthetic``: as many generated images instead (no real image of the class);
- ``mixed``:     the real images plus as many generated ones;
- ``real_aug``:  the real images, with plain augmentation (:data:`AUGMENTATION`);
- ``mixed_aug``: real plus generated images, with the same augmentation;
- ``oracle``:    real plus as many *more real* images, with the same augmentation
                 (when the caller has them): the ceiling of what extra images give.

Every arm gets the same small random shifts; the ``*_aug`` arms and the oracle
all get the same augmentation besides. The generated images are only credited
with what they add *beyond* plain augmentation: ``credit`` = ``mixed_aug`` -
``real_aug``, with a 95 % interval from a paired bootstrap that redraws both the
classifier seeds and the test images (the few held-out photos are the main
noise). ``verdict`` says it in words, from the interval, never from the point
value: "adds accuracy beyond augmentation", "no measurable gain beyond
augmentation" or "hurts".

The score is **balanced accuracy** (mean recall over all classes) on held-out
real images. Recall of the generated class alone is never used: adding any
images labelled with that class, even noise, raises its recall by shifting the
prior. Training also samples classes uniformly (``ClassifierSettings.class_balanced``,
the default; False draws images uniformly, classes at their natural frequencies), so the
class sizes do not shift the prior either; what changes between the runs is only the
content of the images. GQI (GAN Quality Index) is chance-corrected:
``(synthetic - 1/K) / (real - 1/K) * 100`` for K classes (0 = chance, 100 = as
good as the real photos).

Only the generated class holds generated images, so a classifier could learn
"generated-looking => this class"; since the test images are all real, that
shortcut can only cost the mixed arms accuracy: the credit errs low, not high.

Everything is deterministic for a seed (on the same machine and thread count)
and small enough to run on a CPU inside the pipeline.

The classifier is :mod:`classifier`; the test of a whole labelled dataset (generated images in every
class) is :mod:`balance`. Result values share one shape, see :func:`metric`.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

import torch

from apps.ml.quality.classifier import AUGMENTATION, ClassifierSettings, SmallCNN, predict, train_classifier


def metric(value: float | None, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    """The one shape of every reported number: ``{"value": x, "reason": r, ...}``.

    ``value`` is a float, or None when it could not be measured, in which case
    ``reason`` says why in one plain sentence. Extra keys (``std``,
    ``per_seed``, ``reference`` ...) add detail and may be absent.
    """
    if value is not None:
        value = round(float(value), 6)
    return {"value": value, "reason": None if value is not None else (reason or "not measured"), **extra}


ARMS = ("real", "synthetic", "mixed", "real_aug", "mixed_aug", "oracle")
AUGMENTED_ARMS = ("real_aug", "mixed_aug", "oracle")
BOOTSTRAP = 2000
CREDIT_WORDS = {
    "gain": "adds accuracy beyond augmentation",
    "none": "no measurable gain beyond augmentation",
    "loss": "hurts",
}

Hits = dict[str, list[list[torch.Tensor]]]  # per arm, per seed, per test class: a bool per image (predicted right)


def summary(values: list[float], reason: str | None = None) -> dict[str, Any]:
    """One arm's per-seed scores as a :func:`metric`: their mean, ``std`` and ``per_seed``."""
    if not values:
        return metric(None, reason)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return metric(statistics.fmean(values), std=round(std, 6), per_seed=[round(v, 6) for v in values])


def _correct(model: SmallCNN, test_classes: list[torch.Tensor], image_size: int) -> list[torch.Tensor]:
    """Per test class, a bool per image: predicted right."""
    return [predict(model, images, image_size=image_size) == label for label, images in enumerate(test_classes)]


def bootstrap_accuracies(correct: list[list[torch.Tensor]], draws: int, seed: int) -> torch.Tensor:
    """[draws] balanced accuracies of one arm, over resampled seeds and resampled test images.

    ``correct[s][c]``: bool per test image of class c, classifier seed s. The same ``seed`` gives
    the same draws for every arm, so differences between arms are paired.
    """
    gen = torch.Generator().manual_seed(seed)
    n_seeds = len(correct)
    seed_pick = torch.randint(0, n_seeds, (draws, n_seeds), generator=gen)
    recalls = []
    for c in range(len(correct[0])):
        per_seed = torch.stack([correct[s][c].double() for s in range(n_seeds)])  # [S, n_c]
        pick = torch.randint(0, per_seed.shape[1], (draws, per_seed.shape[1]), generator=gen)
        recall = per_seed[:, pick].mean(dim=2)  # [S, draws]
        recalls.append(recall.gather(0, seed_pick.T).mean(dim=0))  # mean over the drawn seeds
    return torch.stack(recalls).mean(dim=0)


def credit(
    correct_with: list[list[torch.Tensor]],
    correct_without: list[list[torch.Tensor]],
    point: list[float],
    *,
    draws: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """The accuracy one arm adds over another: mean paired difference with a 95 % bootstrap interval.

    ``point``: the per-seed differences (the value is their mean). Adds ``low`` / ``high`` (the
    interval) and ``verdict`` ("gain", "none" or "loss"; "none" whenever the interval holds 0).
    """
    diff = bootstrap_accuracies(correct_with, draws, seed) - bootstrap_accuracies(correct_without, draws, seed)
    low, high = torch.quantile(diff, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    word = "gain" if low > 0 else "loss" if high < 0 else "none"
    return summary(point) | {
        "low": round(low, 6),
        "high": round(high, 6),
        "verdict": word,
        "words": CREDIT_WORDS[word],
        "draws": draws,
    }


def _null_result(reason: str, classes: int) -> dict[str, Any]:
    keys = (*ARMS, "gqi", "credit")
    return {k: metric(None, reason) for k in keys} | {"counts": {}, "classes": classes}


def _positives(
    real_train: torch.Tensor, synthetic: torch.Tensor, extra: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Each arm's images of the generated class (the arms without generated or extra images left out)."""
    positives = {"real": real_train, "real_aug": real_train}
    if len(synthetic):
        positives |= {
            "synthetic": synthetic,
            "mixed": torch.cat([real_train, synthetic]),
            "mixed_aug": torch.cat([real_train, synthetic]),
        }
    if extra is not None:
        positives["oracle"] = torch.cat([real_train, extra])
    return positives


def _train_arms(
    positives: dict[str, torch.Tensor],
    negatives_train: list[torch.Tensor],
    test_classes: list[torch.Tensor],
    seeds: tuple[int, ...],
    s: ClassifierSettings,
) -> tuple[dict[str, list[float]], Hits, list[float]]:
    """(balanced accuracy per arm and seed, the hits behind them, GQI per seed): every arm trained per seed."""
    chance = 1 / len(test_classes)
    scores: dict[str, list[float]] = {k: [] for k in ARMS}
    correct: Hits = {k: [] for k in ARMS}
    gqi: list[float] = []
    plain, augmented = replace(s, augment=False), replace(s, augment=True)
    for seed in seeds:
        for name, pos in positives.items():
            model = train_classifier(
                [pos, *negatives_train], seed=seed, settings=augmented if name in AUGMENTED_ARMS else plain
            )
            hits = _correct(model, test_classes, s.image_size)
            correct[name].append(hits)
            scores[name].append(statistics.fmean(h.double().mean().item() for h in hits))
        if scores["synthetic"] and scores["real"][-1] > chance:
            gqi.append((scores["synthetic"][-1] - chance) / (scores["real"][-1] - chance) * 100)
    return scores, correct, gqi


def _arm_results(scores: dict[str, list[float]], correct: Hits, gqi: list[float]) -> dict[str, Any]:
    """Every arm's :func:`summary`, ``gqi``, ``credit`` and (with an oracle) ``oracle_credit``."""
    no_synth = "no generated images left to test"
    out = {name: summary(scores[name], no_synth) for name in ARMS}
    out["oracle"] = summary(scores["oracle"], "no further real images of this class were available")
    out["gqi"] = summary(
        gqi, no_synth if not scores["synthetic"] else "the classifier trained on your photos did no better than chance"
    )
    out["credit"] = (
        credit(
            correct["mixed_aug"], correct["real_aug"], [m - r for m, r in zip(scores["mixed_aug"], scores["real_aug"])]
        )
        if scores["mixed_aug"]
        else metric(None, no_synth)
    )
    if scores["oracle"]:
        out["oracle_credit"] = credit(
            correct["oracle"], correct["real_aug"], [o - r for o, r in zip(scores["oracle"], scores["real_aug"])]
        )
    return out


def usefulness_test(
    *,
    real_train: torch.Tensor,
    real_test: torch.Tensor,
    synthetic: torch.Tensor,
    negatives_train: list[torch.Tensor],
    negatives_test: list[torch.Tensor],
    extra_real: torch.Tensor | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    settings: ClassifierSettings | None = None,
) -> dict[str, Any]:
    """Train every arm for each seed and return the report's ``usefulness`` dict.

    ``real_train`` / ``real_test``: uint8 images of the generated class (the
    test images must not have been seen by the generator). ``negatives_*``:
    one uint8 tensor per other class, same channels and size. ``synthetic``:
    generated images; the first ``len(real_train)`` are used. ``extra_real``:
    more real images of the class for the oracle; the first
    ``len(real_train)`` are used.

    Returns one :func:`metric` per arm of :data:`ARMS` (with ``std`` and
    ``per_seed``), ``gqi`` (chance-corrected, per seed then averaged),
    ``credit`` (``mixed_aug`` - ``real_aug``, see :func:`credit`) and, with an
    oracle, ``oracle_credit`` (``oracle`` - ``real_aug``); plus ``counts``
    (images per role), ``classes``, ``seeds`` and ``augmentation``.
    """
    s = settings or ClassifierSettings()
    n = len(real_train)
    if not negatives_train or not negatives_test or not any(len(t) for t in negatives_test):
        return _null_result("no other classes to compare against (upload other classes or a 'not this class' set)", 1)
    if n == 0 or len(real_test) == 0:
        return _null_result("no real images of the class to train on and test with", 1 + len(negatives_train))

    synthetic = synthetic[:n]
    extra = extra_real[:n] if extra_real is not None and len(extra_real) else None
    test_classes = [real_test, *negatives_test]
    scores, correct, gqi = _train_arms(
        _positives(real_train, synthetic, extra), negatives_train, test_classes, seeds, s
    )
    return _arm_results(scores, correct, gqi) | {
        "counts": {
            "real_train": n,
            "real_test": len(real_test),
            "synthetic": len(synthetic),
            "extra_real": 0 if extra is None else len(extra),
            "negatives_train": [len(t) for t in negatives_train],
            "negatives_test": [len(t) for t in negatives_test],
        },
        "classes": len(test_classes),
        "seeds": list(seeds),
        "augmentation": AUGMENTATION,
    }
