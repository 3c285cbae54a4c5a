"""Choosing a conditional generator's classifier-free guidance scale on the user's training photos.

Guidance trades variety for class fidelity: at 1 the images are as varied as the model can make
them but may drift from their class; high scales give typical, similar images. The best scale
depends on the model and the data, so it is chosen per model, on a **validation split of the
training photos** (never on the held-out photos the quality report tests on: a scale chosen on
the test split would flatter the report):

1. each class's training photos are split into a fitting part and a validation part
   (:data:`VALIDATION_SHARE`, at least one photo of each);
2. a small classifier of the classes is trained on the fitting part; its features are the space
   distances are measured in (a wrong-class or off-looking image lands far from its class);
3. for each candidate scale, ``per_class`` images of every class are generated, and the kernel
   distance (KID formula) between them and the class's validation photos is averaged over the
   classes: low when the images are of their class and look like its photos;
4. the scale with the lowest mean distance wins, among the scales whose images stay varied: the
   kernel distance to a handful of validation photos cannot see a generator that repeats one good
   picture, so a scale whose images (in some class) are less than :data:`VARIETY_FLOOR` as varied in
   pixels as the class's photos is passed over, unless every scale is.

Django-free. :func:`choose_guidance` returns the scale and every candidate's score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from apps.ml.quality.classifier import ClassifierSettings, train_classifier
from apps.ml.quality.metrics import FeatureNet, diversity_ratio, kernel_distance

CANDIDATES = (1.0, 2.0, 3.0, 5.0, 8.0)
VALIDATION_SHARE = 0.25
MIN_CLASS_PHOTOS = 4  # two to fit on, two to compare with
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


def choose_guidance(
    model: ConditionalSampler,
    photos: torch.Tensor,
    labels: torch.Tensor,
    *,
    candidates: Sequence[float] = CANDIDATES,
    per_class: int = 64,
    steps: int | None = None,
    seed: int = 0,
    classifier_settings: ClassifierSettings | None = None,
) -> dict[str, Any]:
    """The guidance scale for ``model`` (a conditional generator type) chosen on its training ``photos``
    (uint8 [N, C, H, W]) and their ``labels`` (int [N]) - see the module notes.

    Returns ``{"guidance": best, "scores": {scale: mean kernel distance}, "candidates": [...],
    "validation_photos": n, "per_class": n, "against": "a validation split of the training photos"}``.
    """
    if not candidates:
        raise ValueError("no candidate guidance scales")
    fit, fit_labels, val, val_labels = validation_split(photos, labels, seed=seed)
    classes = sorted(set(labels.tolist()))
    s = classifier_settings or ClassifierSettings()
    classifier = train_classifier([fit[fit_labels == c] for c in classes], seed=seed, settings=s)
    features = FeatureNet(classifier, s.image_size, "classes")
    reference = {c: features(val[val_labels == c]) for c in classes}
    scores, variety = {}, {}
    for scale in candidates:
        distances, ratios = [], []
        for c in classes:
            generated = model.sample(per_class, seed=seed + 7919 * (c + 1), steps=steps, labels=c, guidance=scale)
            distances.append(kernel_distance(features(generated), reference[c], seed=seed))
            ratios.append(diversity_ratio(generated, photos[labels == c], seed=seed))
        scores[float(scale)] = sum(distances) / len(distances)
        variety[float(scale)] = min(ratios)
    varied = [scale for scale in scores if variety[scale] >= VARIETY_FLOOR] or list(scores)
    best = min(varied, key=lambda scale: (scores[scale], scale))
    return {
        "guidance": best,
        "scores": {f"{k:g}": round(v, 6) for k, v in scores.items()},
        "variety": {f"{k:g}": round(v, 4) for k, v in variety.items()},
        "candidates": [float(c) for c in candidates],
        "validation_photos": len(val),
        "per_class": per_class,
        "against": "a validation split of the training photos",
    }
