"""Drop unusable generated images: mostly noise, blank, or near-copies of training images.

Used at generation (on by default): :func:`generate_filtered` samples, scores
every image with :func:`score_images` and samples more until the requested
count of kept images is met. The thresholds are calibrated once on the real
images in :func:`build_reference`:

- **noise**: share of an image's contrast energy that sits in the finest
  detail, ``sum((x - blur(x))^2) / sum((x - mean)^2)``. Real photos keep most
  of their energy in coarse structure (Fashion-MNIST: median 0.1-0.2, 99th
  percentile about 0.4; emoji about 0.1); white noise scores about 0.79
  whatever its resolution. An image is "noise" above
  ``q99(real) + NOISE_MARGIN * (1 - q99(real))``, capped at ``NOISE_CAP``.
- **blank**: pixel standard deviation (pixels in [0, 1]) below
  ``min(BLANK_STD, half the 1st percentile of the real images')``.
- **copy**: a near-copy of a training photo, its mirror image or one of its
  augmented copies, by the rule of :mod:`copies` (the report uses the same); for a
  conditional generator, of a photo of the image's own class, by that class's thresholds
  (:func:`build_class_references`: the upper confidence bound of the 1 % quantile,
  :data:`copies.FILTER_CONFIDENCE`, as a class may have few photos).
- **class** (conditional generators, through ``generate_filtered``'s ``class_check``):
  not recognised as its intended class by :mod:`class_filter`'s classifier.

Each sampling call gets its own seed, derived from (job seed, chunk, round) by
:func:`stream_seed`, so jobs with different seeds never share an image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from apps.ml.quality import copies
from apps.ml.quality.dedupe import duplicate_groups
from apps.ml.quality.images import to_unit_float
from apps.ml.quality.metrics import blur

NOISE_MARGIN = 0.5
NOISE_CAP = 0.7  # pure white noise scores ~0.79
NOISE_DEFAULT = 0.6  # when there are no real images to calibrate on
BLANK_STD = 0.02  # about 5 grey levels


def noise_scores(images: torch.Tensor) -> torch.Tensor:
    """Share of each image's contrast energy in the finest detail (0 = smooth, ~0.79 = white noise)."""
    x = to_unit_float(images).double()
    residual = x - blur(x)
    centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
    return residual.square().sum((1, 2, 3)) / centred.square().sum((1, 2, 3)).clamp_min(1e-12)


def contrast(images: torch.Tensor) -> torch.Tensor:
    """Pixel standard deviation of each image (pixels in [0, 1]); near 0 = blank."""
    return to_unit_float(images).flatten(1).double().std(dim=1)


@dataclass
class FilterReference:
    """What generated images are judged against, computed once from the real images.

    ``copy_reference``: the generator's training photos, their mirrors and augmented copies,
    for the copy check (``train``: the photos alone); for a conditional generator, one class's
    (:func:`build_class_references`), ``photo_index`` then giving each photo's index among all.
    The thresholds are in the units of
    :func:`noise_scores`, :func:`contrast` and :mod:`copies`; ``calibration`` says how
    they were obtained.
    """

    copy_reference: copies.CopyReference
    noise_threshold: float
    blank_threshold: float
    copy_thresholds: copies.CopyThresholds
    calibration: dict[str, Any] = field(default_factory=dict)
    photo_index: torch.Tensor | None = None  # the copy reference's photos' indices in a larger set (one class's)

    @property
    def train(self) -> torch.Tensor:
        return self.copy_reference.images[: self.copy_reference.photos]

    @property
    def copy_threshold(self) -> float:
        return self.copy_thresholds.distance

    def thresholds(self) -> dict[str, Any]:
        """The thresholds as a JSON-serialisable dict (for manifests and reports)."""
        return {
            "noise": round(self.noise_threshold, 6),
            "blank": round(self.blank_threshold, 6),
            **self.copy_thresholds.as_dict(),
            **self.calibration,
        }


def _noise_and_blank(real: torch.Tensor) -> tuple[float, float, float]:
    """(noise threshold, blank threshold, the real photos' 99th noise percentile) from the real photos."""
    q99 = torch.quantile(noise_scores(real), 0.99).item()
    noise = min(NOISE_CAP, q99 + NOISE_MARGIN * (1 - q99))
    blank = min(BLANK_STD, 0.5 * torch.quantile(contrast(real), 0.01).item())
    return noise, blank, q99


def build_reference(
    train: torch.Tensor, heldout: torch.Tensor | None = None, augmented: torch.Tensor | None = None
) -> FilterReference:
    """Calibrate the thresholds on the real photos (training and held-out; see the module docstring).

    ``augmented``: the augmented training set (:func:`augment.augment_dataset`'s layout), when
    the generator trained on one: copies of those count as copies too.
    """
    real = train if heldout is None or not len(heldout) else torch.cat([train, heldout])
    noise, blank, q99 = _noise_and_blank(real)
    return FilterReference(
        copy_reference=copies.build_reference(train, augmented),
        noise_threshold=noise,
        blank_threshold=blank,
        copy_thresholds=copies.calibrate(train, heldout, duplicate_groups(real), augmented),
        calibration={
            "real_noise_q99": round(q99, 6),
            "copy_reference_images": len(train) * 2 + (0 if augmented is None else len(augmented) - len(train)),
        },
    )


def build_class_references(
    train: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    *,
    heldout: torch.Tensor | None = None,
    heldout_labels: torch.Tensor | None = None,
    augmented: torch.Tensor | None = None,
    augmented_labels: torch.Tensor | None = None,
    confidence: float | None = copies.FILTER_CONFIDENCE,
) -> dict[int, FilterReference]:
    """A conditional generator's filter: one reference per class index, ``0 .. classes - 1``.

    A generated image of a class is a near-copy only of that class's photos (and their mirrors and
    augmented copies), by thresholds calibrated on that class's real photos alone. Thresholds
    calibrated on every class together are set by the large classes, whose photos sit close to one
    another, and let copies of a class of few photos through (bench/longtail.py: 17-19 % of the
    images of two 30-photo classes were near-copies of their photos). The noise and blank limits
    stay calibrated on every photo. A class with fewer than two real photos, or none to train on,
    gets the pooled copy thresholds. ``nearest_train`` in the scores stays an index into ``train``.
    Each copy limit is the upper confidence bound of the 1 % quantile (:data:`copies.FILTER_CONFIDENCE`), not
    its estimate: from a class's few tens of photos the estimate is noisy, and one that comes out low lets
    copies through (5-6 % of a 30-photo class's sandals, bench/README.md #19), where one that comes out high
    only costs another sample. ``confidence=None``: the estimate (as before; for comparison).
    """
    if heldout is None or heldout_labels is None or not len(heldout):
        heldout, heldout_labels = None, None
    real = train if heldout is None else torch.cat([train, heldout])
    noise, blank, q99 = _noise_and_blank(real)
    pooled = None
    references = {}
    for label in range(classes):
        own = labels == label
        photos = train[own]
        held = heldout[heldout_labels == label] if heldout is not None and heldout_labels is not None else None
        copied = (
            augmented[augmented_labels == label] if augmented is not None and augmented_labels is not None else None
        )
        class_real = photos if held is None else torch.cat([photos, held])
        if len(photos) and len(class_real) >= 2:
            thresholds = copies.calibrate(photos, held, duplicate_groups(class_real), copied, confidence=confidence)
            source = "the class's own photos"
        else:
            pooled = pooled or copies.calibrate(train, heldout, duplicate_groups(real), None, confidence=confidence)
            thresholds, source = pooled, "every class's photos (this class has too few to calibrate on)"
        reference_photos = photos if len(photos) else train
        references[label] = FilterReference(
            copy_reference=copies.build_reference(reference_photos, copied if len(photos) else None),
            noise_threshold=noise,
            blank_threshold=blank,
            copy_thresholds=thresholds,
            calibration={
                "real_noise_q99": round(q99, 6),
                "copy_calibrated_on": source,
                "copy_reference_images": len(reference_photos) * 2
                + (0 if copied is None or not len(photos) else len(copied) - len(photos)),
            },
            photo_index=own.nonzero().flatten() if len(photos) else None,
        )
    return references


def class_thresholds(references: dict[int, FilterReference], names: list[str]) -> dict[str, Any]:
    """The manifest's ``thresholds`` of a conditional generator: the shared noise and blank limits, and
    each class's copy limits (``by_class``, by class name)."""
    first = next(iter(references.values()))
    shared = {
        "noise": round(first.noise_threshold, 6),
        "blank": round(first.blank_threshold, 6),
        "real_noise_q99": first.calibration["real_noise_q99"],
    }
    by_class = {}
    for label, reference in references.items():
        limits = reference.thresholds()
        by_class[names[label]] = {k: v for k, v in limits.items() if k not in shared}
    return {**shared, "by_class": by_class}


@dataclass
class FilterResult:
    """Per-image verdicts of :func:`score_images`.

    ``keep``: bool per image. ``scores``: one JSON-serialisable dict per image
    (``noise``, ``contrast``, ``copy_distance``, ``copy_ratio``, ``nearest_train``,
    ``dropped``: None or "noise" / "blank" / "copy"). ``dropped``: counts per reason.
    """

    keep: torch.Tensor
    scores: list[dict[str, Any]]
    dropped: dict[str, int]


def score_images(
    images: torch.Tensor, reference: FilterReference, *, drop_copies: bool = True, found: copies.Nearest | None = None
) -> FilterResult:
    """Score uint8 images and decide which to keep; the first failing check names the reason.

    ``found``: :func:`copies.nearest_photos` of these images, when the caller has it already."""
    noise = noise_scores(images)
    spread = contrast(images)
    found = found if found is not None else copies.nearest_photos(images, reference.copy_reference)
    copy_flags = copies.is_copy(found, reference.copy_thresholds)
    scores, keep = [], []
    dropped = {"noise": 0, "blank": 0, "copy": 0}
    for i in range(len(images)):
        reason = None
        if spread[i] < reference.blank_threshold:
            reason = "blank"
        elif noise[i] > reference.noise_threshold:
            reason = "noise"
        elif drop_copies and copy_flags[i]:
            reason = "copy"
        if reason:
            dropped[reason] += 1
        keep.append(reason is None)
        scores.append(
            {
                "noise": round(float(noise[i]), 6),
                "contrast": round(float(spread[i]), 6),
                "copy_distance": round(float(found.distance[i]), 6),
                "copy_ratio": round(float(found.ratio[i]), 6),
                "nearest_train": int(
                    found.photo[i] if reference.photo_index is None else reference.photo_index[found.photo[i]]
                ),
                "dropped": reason,
            }
        )
    return FilterResult(keep=torch.tensor(keep, dtype=torch.bool), scores=scores, dropped=dropped)


@dataclass
class FilteredBatch:
    """What :func:`generate_filtered` delivers.

    ``images``: the kept images (``count`` of them unless ``shortfall`` > 0).
    ``scores``: a dict per kept image, as in :class:`FilterResult`, plus
    ``seed``, ``batch_size`` and ``index``: ``sample(batch_size, seed)[index]`` reproduces it.
    ``dropped``: counts per reason over all rounds; ``generated``: images sampled in total.
    """

    images: torch.Tensor
    scores: list[dict[str, Any]]
    dropped: dict[str, int]
    generated: int
    shortfall: int


def stream_seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for one sampling stream, from the job's seed and the stream's place in it.

    Derived with numpy's ``SeedSequence`` (a hash), so the streams of different jobs and of
    different (chunk, round) places are independent: seeds s and s+1 share no stream.
    """
    words = np.random.SeedSequence([seed, *stream]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31 | int(words[1]) >> 1) & (2**63 - 1)


def generate_filtered(
    sample: Callable[[int, int], torch.Tensor],
    count: int,
    reference: FilterReference | None,
    *,
    seed: int,
    chunk: int = 0,
    max_rounds: int = 10,
    drop_copies: bool = True,
    class_check: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> FilteredBatch:
    """Sample with ``sample(n, seed)`` and drop bad images until ``count`` are kept.

    Round ``r`` samples with ``stream_seed(seed, chunk, r)`` and asks for the missing count plus a
    margin from the drop rate seen so far. ``reference=None`` turns filtering
    off (one round, everything kept). After ``max_rounds`` it returns what it
    has and says how many are missing in ``shortfall``.

    ``class_check(images) -> (keep, score)`` (e.g. :meth:`class_filter.ClassFilter.check` for the
    class being sampled): each image's ``score`` goes into its dict; with filtering on, an image that
    passes the other checks but not this one is dropped as "class" and replaced like the others.
    """
    kept: list[torch.Tensor] = []
    kept_scores: list[dict[str, Any]] = []
    dropped = {"noise": 0, "blank": 0, "copy": 0, "class": 0}
    generated = 0
    have = 0
    for r in range(max_rounds if reference is not None else 1):
        missing = count - have
        if missing <= 0:
            break
        keep_rate = have / generated if generated else 1.0
        ask = missing if generated == 0 else min(missing * 10, int(missing / max(keep_rate, 0.1) * 1.2) + 1)
        round_seed = stream_seed(seed, chunk, r)
        images = sample(ask, round_seed)
        generated += len(images)
        if reference is None:
            result_keep = torch.ones(len(images), dtype=torch.bool)
            scores = [{"dropped": None} for _ in range(len(images))]
        else:
            result = score_images(images, reference, drop_copies=drop_copies)
            result_keep, scores = result.keep, result.scores
            for k, v in result.dropped.items():
                dropped[k] += v
        if class_check is not None:
            class_keep, class_scores = class_check(images)
            for i, score in enumerate(class_scores.tolist()):
                scores[i] = {**scores[i], "score": round(score, 6)}
            if reference is not None:
                off_class = result_keep & ~class_keep
                for i in torch.nonzero(off_class).flatten().tolist():
                    scores[i]["dropped"] = "class"
                dropped["class"] += int(off_class.sum())
                result_keep = result_keep & class_keep
        for i in torch.nonzero(result_keep).flatten().tolist():
            if have == count:
                break
            kept.append(images[i])
            kept_scores.append({**scores[i], "seed": round_seed, "batch_size": len(images), "index": i})
            have += 1
    images = torch.stack(kept) if kept else torch.empty(0, dtype=torch.uint8)
    return FilteredBatch(
        images=images, scores=kept_scores, dropped=dropped, generated=generated, shortfall=count - have
    )
