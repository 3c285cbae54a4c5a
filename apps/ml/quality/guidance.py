"""Choosing a conditional generator's classifier-free guidance scale on the user's training photos.

Guidance trades variety for class fidelity: at 1 the images are as varied as the model can make
them but may drift from their class; high scales give typical, similar images. The best scale
depends on the model and the data, so it is chosen per model, on a **validation split of the
training photos** (never on the held-out photos the quality report tests on: a scale chosen on
the test split would flatter the report), by what the images are for - **making a classifier of
the classes better**, the way SynthGen recommends using them:

1. each class's training photos are split into a fitting part and a validation part
   (:data:`VALIDATION_SHARE`, at least two of each);
2. for each candidate scale, ``per_class`` images of every class are generated and mixed into the
   fitting photos by the recipe (:func:`apps.ml.quality.balance.recipe_mix`: at most 4 generated
   images a photo, each weighing 0.5; every class gets them, not only the short ones, so that the
   images of every class are judged, also in a balanced dataset), a small classifier of the
   classes is trained on the mix (augmented, as the report's balance test trains its mixed arm) for
   each of ``seeds``, and scored on the validation photos: balanced accuracy, ties broken by the
   mean log-probability of the true class (also balanced over the classes);
3. the scale with the best mean score wins (a tie: the lower scale, the more varied images), among
   the scales whose images stay varied: a scale whose images (in some class) are less than
   :data:`VARIETY_FLOOR` as varied in pixels as the class's photos is passed over, unless every
   scale is. The fitting photos alone are scored the same way (``photos_only``), so the choice
   shows whether any scale helped on the validation photos.

Before, the scale was the one whose images sat closest to the validation photos in a classifier's
features (a kernel distance). On the long-tail benchmark (bench/README.md, "Images that count")
that chose guidance 1, where the images are close to their class's look but drift between the
short classes, and the recipe's credit was -0.48 points against +0.14 at guidance 3: closeness is
not what helps a classifier.

Django-free. :func:`choose_guidance` returns the scale and every candidate's score.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import torch

from apps.ml.quality.balance import recipe_mix
from apps.ml.quality.classifier import ClassifierSettings, predict_proba, train_classifier
from apps.ml.quality.metrics import diversity_ratio

CANDIDATES = (1.0, 2.0, 3.0, 5.0, 8.0)
VALIDATION_SHARE = 0.25
MIN_CLASS_PHOTOS = 4  # two to fit on, two to compare with
SEEDS = (0, 1)  # classifier seeds per candidate scale
CRITERION = (
    "balanced accuracy on the validation photos of a classifier trained on the other training photos plus "
    "generated images, mixed as SynthGen recommends"
)
VARIETY_FLOOR = 0.7  # the quality report's "repeats itself" alarm (apps.ml.quality.report.DIVERSITY_ALARM)


class ConditionalSampler(Protocol):
    """What :func:`choose_guidance` needs of a conditional generator (apps.ml.engine's ``GeneratorType.sample``)."""

    def sample(
        self, n: int, *, seed: int, steps: int | None = None, labels: Any = None, guidance: float | None = None
    ) -> torch.Tensor: ...


def validation_split(
    photos: torch.Tensor, labels: torch.Tensor, *, seed: int = 0, share: float = VALIDATION_SHARE
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fit, fit labels, validation, validation labels): ``share`` of each class's photos (at least two,
    and at least two left to fit on) go to validation, drawn with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    fit, val = [], []
    for c in sorted(set(labels.tolist())):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        if len(members) < MIN_CLASS_PHOTOS:
            raise ValueError(
                f"a class has {len(members)} training photos; choosing a guidance scale needs "
                f"{MIN_CLASS_PHOTOS} in every class"
            )
        n_val = min(max(2, round(len(members) * share)), len(members) - 2)
        val.append(members[:n_val])
        fit.append(members[n_val:])
    fit_index, val_index = torch.cat(fit), torch.cat(val)
    return photos[fit_index], labels[fit_index], photos[val_index], labels[val_index]


def _validation_score(
    fit: list[torch.Tensor],
    val: list[torch.Tensor],
    weights: list[torch.Tensor] | None,
    seeds: Sequence[int],
    settings: ClassifierSettings,
) -> tuple[float, float]:
    """(balanced accuracy, balanced mean log-probability of the true class) on ``val`` of the classifier trained
    on ``fit`` (one tensor per class, loss ``weights`` per image or None), averaged over ``seeds``."""
    accuracies, log_likelihoods = [], []
    for seed in seeds:
        model = train_classifier(fit, seed=seed, settings=settings, weights=weights)
        probabilities = [predict_proba(model, images, image_size=settings.image_size) for images in val]
        accuracies.append(
            statistics.fmean((p.argmax(1) == c).double().mean().item() for c, p in enumerate(probabilities))
        )
        log_likelihoods.append(
            statistics.fmean(p[:, c].clamp_min(1e-12).log().mean().item() for c, p in enumerate(probabilities))
        )
    return statistics.fmean(accuracies), statistics.fmean(log_likelihoods)


def choose_guidance(
    model: ConditionalSampler,
    photos: torch.Tensor,
    labels: torch.Tensor,
    *,
    candidates: Sequence[float] = CANDIDATES,
    per_class: int = 64,
    steps: int | None = None,
    seed: int = 0,
    seeds: Sequence[int] = SEEDS,
    classifier_settings: ClassifierSettings | None = None,
) -> dict[str, Any]:
    """The guidance scale for ``model`` (a conditional generator type) chosen on its training ``photos``
    (uint8 [N, C, H, W]) and their ``labels`` (int [N]) - see the module notes. ``seed``: the split's and the
    samples'; ``seeds``: the classifiers'.

    Returns ``{"guidance": best, "scores": {scale: validation balanced accuracy}, "log_likelihood": {scale: ...},
    "photos_only": {"score": ..., "log_likelihood": ...}, "variety": {scale: ...}, "candidates": [...],
    "validation_photos": n, "per_class": n, "criterion": ..., "against": "a validation split of the training
    photos"}``.
    """
    if not candidates:
        raise ValueError("no candidate guidance scales")
    fit, fit_labels, val, val_labels = validation_split(photos, labels, seed=seed)
    classes = sorted(set(labels.tolist()))
    fit_by_class = [fit[fit_labels == c] for c in classes]
    val_by_class = [val[val_labels == c] for c in classes]
    s = replace(classifier_settings or ClassifierSettings(), augment=True)  # as the balance test's mixed arm
    photos_only = _validation_score(fit_by_class, val_by_class, None, seeds, s)
    scores, variety = {}, {}
    for scale in candidates:
        generated = [
            model.sample(per_class, seed=seed + 7919 * (c + 1), steps=steps, labels=c, guidance=scale) for c in classes
        ]
        mixed, weights = recipe_mix(fit_by_class, generated)  # every class gets its images: each is judged
        scores[float(scale)] = _validation_score(mixed, val_by_class, weights, seeds, s)
        variety[float(scale)] = min(
            diversity_ratio(images, photos[labels == c], seed=seed) for c, images in zip(classes, generated)
        )
    varied = [scale for scale in scores if variety[scale] >= VARIETY_FLOOR] or list(scores)
    best = max(varied, key=lambda scale: (*scores[scale], -scale))
    return {
        "guidance": best,
        "scores": {f"{k:g}": round(v[0], 6) for k, v in scores.items()},
        "log_likelihood": {f"{k:g}": round(v[1], 6) for k, v in scores.items()},
        "photos_only": {"score": round(photos_only[0], 6), "log_likelihood": round(photos_only[1], 6)},
        "variety": {f"{k:g}": round(v, 4) for k, v in variety.items()},
        "candidates": [float(c) for c in candidates],
        "validation_photos": len(val),
        "per_class": per_class,
        "seeds": list(seeds),
        "criterion": CRITERION,
        "against": "a validation split of the training photos",
    }
