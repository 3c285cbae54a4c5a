"""The balance test: do generated images help a classifier of *every* class of a labelled dataset?

A conditional generator fills the short classes of a dataset; :func:`balance_test` trains the small
classifier (:mod:`classifier`) on the photos alone, on the photos plus generated images (the recipe
:data:`GENERATED_WEIGHT` / :data:`GENERATED_PER_PHOTO`) and on generated images only, and scores every
arm on held-out photos (balanced accuracy). ``credit`` is the gain with its paired-bootstrap interval
(:func:`usefulness.credit`); the photo equivalent says in words what the generated images are worth in
real photos of the short classes (:func:`learning_curve.photo_equivalent`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import Any

import torch

from apps.ml.quality.classifier import AUGMENTATION, ClassifierSettings, predict, train_classifier
from apps.ml.quality.learning_curve import photo_equivalent
from apps.ml.quality.usefulness import BOOTSTRAP, Hits, bootstrap_accuracies, credit, metric, summary

BALANCE_ARMS = ("real_aug", "mixed_aug", "synthetic")
# The recipe SynthGen recommends for mixing generated images into a training set: each generated image's loss
# weight (a real photo weighs 1). metadata.jsonl and manifest.json carry it, and the balance test's mixed arm
# trains with it, so the credit the report gives is the credit of following the advice. Chosen on
# bench/longtail.py (see bench/README.md, "Images that count").
GENERATED_WEIGHT = 0.5
# ... and at most this many generated images per real photo of a class: on that benchmark, filling tails of 24
# photos with 470 generated ones cost 5.4 points of balanced accuracy; 100 (about 4 a photo), with the class
# imbalance corrected by the real photo counts, cost nothing measurable (-0.1 [-0.8, +0.6]) and gained nothing.
GENERATED_PER_PHOTO = 4
# The photo equivalent's real arms: ``real_aug`` with each short class cut to a share of its photos.
PHOTO_FRACTIONS = {"real_aug_25": 0.25, "real_aug_50": 0.5}
MIN_SHORT_HELDOUT = 10  # held-out photos of the short classes, all together, for a photo count to mean something
MIN_SUBSAMPLE = 2  # photos of every short class in the smallest (25 %) arm


def subsample(images: torch.Tensor, fraction: float, *, seed: int, salt: int = 0) -> torch.Tensor:
    """``fraction`` of ``images`` (rounded half up, at least 1), drawn with ``seed``: the draws of one seed are
    nested (its 25 % is part of its 50 %), so its learning curve differs only in how many photos it saw."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 1000 + salt))
    return images[order[: max(1, math.floor(len(images) * fraction + 0.5))]]


def _names(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _photo_equivalent_skipped(
    short: list[int], real_train: list[torch.Tensor], real_test: list[torch.Tensor], class_names: list[str]
) -> str | None:
    """Why the dataset is too small for a photo count to mean something (None: it is not)."""
    if not short:
        return "every class has as many photos as the largest: there is no short class to count photos for"
    held = sum(len(real_test[i]) for i in short)
    if held < MIN_SHORT_HELDOUT:
        return (
            f"too few unseen photos of the short classes to count photos: {held}, under {MIN_SHORT_HELDOUT} "
            "(the interval would be too wide to mean anything)"
        )
    small = [
        class_names[i]
        for i in short
        if len(subsample(real_train[i], min(PHOTO_FRACTIONS.values()), seed=0)) < MIN_SUBSAMPLE
    ]
    if small:
        return (
            f"too few photos to count photos: 25 % of the photos of {', '.join(small)} is under "
            f"{MIN_SUBSAMPLE} photos a class, too few for a learning curve"
        )
    return None


def _photo_words(pe: dict[str, Any], credit_: dict[str, Any]) -> str:
    """The photo equivalent in words, from its interval and the credit's (never a gain that the
    credit's interval does not show)."""
    ends = ["unbounded" if pe[end] is None else f"{pe[end]:.0f}" for end in ("low", "high")]
    interval = (
        f"95 % interval {ends[0]}–{ends[1]}" if "unbounded" not in ends else f"95 % interval {ends[0]} to {ends[1]}"
    )
    if pe["verdict"] == "gain":
        photos = f"{pe['photos']:.0f}"
        return f"the generated images are worth about {photos} more real photos of the short classes ({interval})"
    seen = pe["detectable"]
    could = (
        f"; the test could have seen a gain of about {seen['photos']:.0f} more real photos "
        f"({seen['accuracy'] * 100:.1f} points of accuracy)"
        if seen.get("photos") is not None
        else f"; the test could have seen a gain of about {seen['accuracy'] * 100:.1f} points of accuracy"
    )
    if credit_.get("verdict") == "loss":
        return (
            "no gain: the generated images lower the classifier's accuracy (their credit's 95 % interval is "
            "below 0), so they are worth no real photos"
        )
    if pe["photos"] is None:
        return (
            "no photo count: the classifier's accuracy does not rise with more photos of the short classes, "
            "so there is no learning curve to read the generated images on" + could
        )
    if pe["photos"] == 0:
        return "no gain: the generated images are worth no more real photos of the short classes" + could
    if pe["curve_verdict"] == "gain":  # the curve reads a gain, the credit's interval holds 0
        return (
            f"no measurable gain: the generated images read as about {pe['photos']:.0f} more real photos of the "
            f"short classes ({interval}), but their credit's 95 % interval holds 0" + could
        )
    return (
        f"no measurable gain: the generated images read as about {pe['photos']:.0f} more real photos of the "
        f"short classes, but the {interval} holds 0" + could
    )


def _photo_equivalent(
    correct: Hits, scores: dict[str, list[float]], sizes: list[int], credit_: dict[str, Any]
) -> dict[str, Any]:
    """:func:`learning_curve.photo_equivalent` on the balanced accuracy, against the short classes' photos,
    with a paired bootstrap over seeds and test images (the credit's draws), and its words."""
    arms = ("real_aug_25", "real_aug_50", "real_aug")
    boot = [bootstrap_accuracies(correct[name], BOOTSTRAP, 0).numpy() for name in (*arms, "mixed_aug")]
    pe = photo_equivalent(sizes, [scores[name] for name in arms], scores["mixed_aug"], resampled=(boot[:3], boot[3]))
    curve_verdict = pe["verdict"]
    # A gain needs the credit's interval above 0 too, and a number to name (a flat curve has none).
    if curve_verdict == "gain" and (credit_.get("verdict") != "gain" or pe["photos"] is None or pe["low"] is None):
        pe["verdict"] = "none"
    pe |= {
        "curve_verdict": curve_verdict,
        "sizes": dict(zip((*arms,), sizes)),
        "accuracy": {name: round(statistics.fmean(scores[name]), 6) for name in (*arms, "mixed_aug")},
        "accuracy_is": "balanced accuracy on every class's unseen photos (as credit)",
        "reason": None,
    }
    pe["curve_words"] = pe.pop("words")
    pe["words"] = _photo_words(pe, credit_)
    return pe


def _not_measured_reason(scored: list[int], short_classes: list[int], unscored_short: list[str]) -> str | None:
    """Why the balance test measures nothing (None: it measures)."""
    if len(scored) < 2:
        return "fewer than two classes have held-out photos to test with"
    if short_classes and len(unscored_short) == len(short_classes):
        # The images are for the short classes; scoring only the others would credit them with what they do to
        # classes they were not made for (a tail of 30 keeps no photo back, see heldout.holdout_count).
        return (
            f"{_names(unscored_short)}, the classes the generated images are for, kept no unseen photos to "
            "test on (a class keeps photos back from 40 photos on): nothing is claimed for them"
        )
    return None


def _not_counted(reason: str) -> dict[str, Any]:
    """The photo equivalent when no photo count is made, and why."""
    return {
        "photos": None,
        "low": None,
        "high": None,
        "verdict": "not measured",
        "reason": reason,
        "words": f"no photo count: {reason}",
    }


Arms = dict[str, list[torch.Tensor] | None]  # each arm's images per class (None: drawn per seed)


def recipe_mix(
    real_train: list[torch.Tensor],
    generated: list[torch.Tensor],
    generated_weight: float = GENERATED_WEIGHT,
    *,
    fill_to: int | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The recipe's training set, one tensor per class: (the photos plus generated images, each image's loss
    weight). Each class gets at most :data:`GENERATED_PER_PHOTO` generated images per photo, and with
    ``fill_to`` at most as many as bring it up to ``fill_to`` images (balancing: the largest class's photo
    count), but at least one (as far as ``generated`` holds). The photos weigh 1, generated images
    ``generated_weight``."""

    def count(real: torch.Tensor) -> int:
        most = GENERATED_PER_PHOTO * len(real)
        return max(1, most if fill_to is None else min(most, fill_to - len(real)))

    fill = [extra[: count(real)] for real, extra in zip(real_train, generated)]
    weights = [
        torch.cat([torch.ones(len(real)), torch.full((len(extra),), float(generated_weight))])
        for real, extra in zip(real_train, fill)
    ]
    return [torch.cat([real, extra]) for real, extra in zip(real_train, fill)], weights


def _arms(
    real_train: list[torch.Tensor], generated: list[torch.Tensor], generated_weight: float
) -> tuple[Arms, list[torch.Tensor]]:
    """(the arms' training images, the mixed arm's loss weights): the photos, the photos filled up with
    generated images (the recipe), and the generated images alone when every class has some."""
    mixed, mixed_weights = recipe_mix(real_train, generated, generated_weight, fill_to=max(len(t) for t in real_train))
    synthetic = [g if len(g) else real[:0] for g, real in zip(generated, real_train)]
    arms: Arms = {"real_aug": real_train, "mixed_aug": mixed}
    if not any(len(g) == 0 for g in synthetic):
        arms["synthetic"] = synthetic
    return arms, mixed_weights


def _arm_images(
    name: str, classes: list[torch.Tensor] | None, real_train: list[torch.Tensor], short_classes: list[int], seed: int
) -> list[torch.Tensor]:
    """An arm's training images for one seed: a photo-fraction arm cuts the short classes (drawn per seed)."""
    if name in PHOTO_FRACTIONS or classes is None:
        return [
            subsample(t, PHOTO_FRACTIONS[name], seed=seed, salt=i) if i in short_classes else t
            for i, t in enumerate(real_train)
        ]
    return classes


def _train_arms(
    arms: Arms,
    mixed_weights: list[torch.Tensor],
    real_train: list[torch.Tensor],
    real_test: list[torch.Tensor],
    scored: list[int],
    short_classes: list[int],
    seeds: tuple[int, ...],
    s: ClassifierSettings,
) -> tuple[dict[str, list[float]], Hits]:
    """(balanced accuracy per arm and seed, the hits per scored class behind them): every arm trained per seed."""
    plain, augmented = replace(s, augment=False), replace(s, augment=True)
    scores: dict[str, list[float]] = {name: [] for name in arms}
    correct: Hits = {name: [] for name in arms}
    for seed in seeds:
        for name, classes in arms.items():
            model = train_classifier(
                _arm_images(name, classes, real_train, short_classes, seed),
                seed=seed,
                settings=plain if name == "synthetic" else augmented,
                weights=mixed_weights if name == "mixed_aug" else None,
            )
            hits = [predict(model, real_test[i], image_size=s.image_size) == i for i in scored]
            correct[name].append(hits)
            scores[name].append(statistics.fmean(h.double().mean().item() for h in hits))
    return scores, correct


def _photo_sizes(real_train: list[torch.Tensor], short_classes: list[int]) -> list[int]:
    """The short classes' photos in each photo-fraction arm (seed 0's draw) and in all of them."""
    return [
        sum(len(subsample(real_train[i], fraction, seed=0)) for i in short_classes)
        for fraction in PHOTO_FRACTIONS.values()
    ] + [sum(len(real_train[i]) for i in short_classes)]


def _arm_counts(
    arms: Arms, real_train: list[torch.Tensor], short_classes: list[int], class_names: list[str]
) -> dict[str, dict[str, int]]:
    """Training images per arm and class (a photo-fraction arm: seed 0's draw)."""
    counts = {
        name: {class_names[i]: len(t) for i, t in enumerate(classes)}
        for name, classes in arms.items()
        if classes is not None
    }
    for name, fraction in PHOTO_FRACTIONS.items():
        if name in arms:
            counts[name] = {
                class_names[i]: len(subsample(t, fraction, seed=0)) if i in short_classes else len(t)
                for i, t in enumerate(real_train)
            }
    return counts


def _balance_credit(correct: Hits, scores: dict[str, list[float]], unscored_short: list[str]) -> dict[str, Any]:
    """``mixed_aug`` - ``real_aug`` (:func:`usefulness.credit`), its words naming the short classes left unscored."""
    out = credit(
        correct["mixed_aug"], correct["real_aug"], [m - r for m, r in zip(scores["mixed_aug"], scores["real_aug"])]
    )
    if unscored_short:
        out["words"] += (
            f" (measured without {_names(unscored_short)}, which kept no unseen photos: nothing is claimed for them)"
        )
    return out


def _short_class_recalls(correct: Hits, scored: list[int], short: list[int], class_names: list[str]) -> dict[str, Any]:
    """Each scored short class's recall per arm, its mean over the seeds (``short``: indices into ``scored``)."""
    return {
        class_names[scored[j]]: {
            name: round(statistics.fmean(hits[j].double().mean().item() for hits in correct[name]), 6)
            for name in correct
        }
        for j in short
    }


def balance_test(
    *,
    real_train: list[torch.Tensor],
    real_test: list[torch.Tensor],
    generated: list[torch.Tensor],
    class_names: list[str],
    seeds: tuple[int, ...] = (0, 1, 2),
    settings: ClassifierSettings | None = None,
    generated_weight: float = GENERATED_WEIGHT,
) -> dict[str, Any]:
    """Do generated images help a classifier of *every* class of a labelled dataset?

    One tensor per class in each list (uint8, one shape). Every class gets generated images, so no
    class can be told apart by looking generated. Arms, each a classifier of all the classes scored on
    the held-out photos ``real_test`` (balanced accuracy):

    - ``real_aug``:  the photos, with plain augmentation;
    - ``mixed_aug``: the photos plus generated images filling every class up to the largest class's
      photo count but to at most :data:`GENERATED_PER_PHOTO` generated images per photo of the class (at
      least one generated image per class, as far as ``generated`` holds), augmented, each
      generated image weighing ``generated_weight`` in the loss (the recipe :data:`GENERATED_WEIGHT`);
    - ``synthetic``: generated images only (the classification accuracy score of Ravuri & Vinyals 2019);
    - ``real_aug_25`` / ``real_aug_50``: as ``real_aug``, with each *short* class (fewer photos than the
      largest) cut to 25 % / 50 % of its photos (drawn per seed, nested), for the photo equivalent.

    ``credit`` = ``mixed_aug`` - ``real_aug`` with its paired-bootstrap 95 % interval (:func:`credit`);
    ``short_classes``: the recall of each class with fewer photos than the largest, per arm.
    ``photo_equivalent``: what the generated images are worth in real photos of the short classes
    (:func:`learning_curve.photo_equivalent`: the balanced accuracy at 25, 50 and 100 % of the short
    classes' photos traces a learning curve, ``mixed_aug`` is read on it; the credit's paired bootstrap
    over seeds and test images. Not the short classes' own recall: images of the wrong class labelled
    as a short class raise that recall at the other classes' cost, and would read as many photos);
    its ``words`` say it, or why it could not be counted (``photos`` None, ``reason``), and never claim a
    gain that ``credit``'s interval does not show.
    Classes without held-out photos are left out of the scores (``classes_scored`` counts the others,
    ``unscored`` names them, and the credit's words say nothing is claimed for them); when every short class
    is among them nothing is measured (the images are for those classes).
    """
    s = settings or ClassifierSettings()
    scored = [i for i, t in enumerate(real_test) if len(t)]
    largest = max(len(t) for t in real_train)
    short_classes = [i for i, t in enumerate(real_train) if len(t) < largest]
    unscored = [class_names[i] for i in range(len(real_test)) if i not in scored]
    unscored_short = [class_names[i] for i in short_classes if i not in scored]
    reason = _not_measured_reason(scored, short_classes, unscored_short)
    if reason:
        return {name: metric(None, reason) for name in (*BALANCE_ARMS, "credit")} | {
            "classes_scored": len(scored),
            "unscored": unscored,
            "photo_equivalent": _not_counted(reason),
        }
    arms, mixed_weights = _arms(real_train, generated, generated_weight)
    skipped = _photo_equivalent_skipped(short_classes, real_train, real_test, class_names)
    if skipped is None:  # two more trainings a seed: the short classes cut to 25 % and 50 % (drawn per seed)
        arms |= {name: None for name in PHOTO_FRACTIONS}
    scores, correct = _train_arms(arms, mixed_weights, real_train, real_test, scored, short_classes, seeds, s)
    out = {name: summary(scores.get(name, []), "a class has no generated images") for name in BALANCE_ARMS}
    out["credit"] = _balance_credit(correct, scores, unscored_short)
    if skipped is None:
        for name in PHOTO_FRACTIONS:
            out[name] = summary(scores[name])
        sizes = _photo_sizes(real_train, short_classes)
        out["photo_equivalent"] = _photo_equivalent(correct, scores, sizes, out["credit"])
    else:
        out["photo_equivalent"] = _not_counted(skipped)
    short = [j for j, i in enumerate(scored) if len(real_train[i]) < largest]
    out["short_classes"] = _short_class_recalls(correct, scored, short, class_names)
    return out | {
        "counts": _arm_counts(arms, real_train, short_classes, class_names),
        "classes_scored": len(scored),
        "unscored": unscored,
        "generated_weight": float(generated_weight),
        "seeds": list(seeds),
        "augmentation": AUGMENTATION,
    }
