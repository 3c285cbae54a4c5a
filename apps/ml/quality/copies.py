"""Near-copies of training photos: found through mirrors, augmentation and small shifts.

A generator that memorised a photo may give it back mirrored (DDIM trains on
horizontal flips), as one of its augmented copies (flipped, turned, cropped),
or a pixel or two off. So a generated image is compared with every training
photo, its mirror image and its augmented copies, each at every shift of up to
:data:`SHIFT` pixels; its distance to a photo is the smallest of these.

Distances are root-mean-square pixel differences (pixels in [0, 1]) over the
image less a :data:`SHIFT`-pixel border, the same scale as :mod:`diversity`.
The :data:`CANDIDATES` closest reference images by the distance of 16x16
thumbnails (itself the smallest over shifts) are measured at full size at every
shift; the relative test divides by the thumbnail distances to the next photos.
A generated image is a **near-copy** when either test says so:

- **absolute**: its distance to the nearest photo is below the distance
  threshold;
- **relative** (Carlini et al. 2023, "Extracting Training Data from Diffusion
  Models"): that distance is below ``ratio`` x the mean distance to the next
  :data:`NEIGHBOURS` photos, i.e. it is far closer to one photo than to the
  rest, which catches copies in a dense class where every image is near all.

Both thresholds are calibrated on the real photos themselves, leave-one-out:
each real photo (training and held-out) is measured the same way against the
training photos, leaving out itself and its own near-duplicate group (a burst
of shots of one thing says nothing about how close a new photo comes). The
threshold is the 1 % quantile of a log-normal fitted to all of these values,
so about 1 in 100 genuinely new photos would be called a copy, and every photo
counts, not just the smallest (the empirical 1 % quantile is used instead where it is lower:
some classes have a heavier tail of look-alikes than a log-normal).

:func:`memorisation_test` is the data-copying test of Meehan et al. 2020 ("A
Non-Parametric Test to Detect Data-Copying in Generative Models"): a
Mann-Whitney U test of generated->training distances against held-out->training
distances. Its z is about 0 for a generator whose images are as far from the
training photos as new real photos are, strongly negative when they are closer
(memorisation), positive when they are farther (not there yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import torch
import torch.nn.functional as F

from apps.ml.engine.images import save_grid

SHIFT = 2  # pixels each way a generated image may be off and still count as the same picture
CANDIDATES = 16  # reference images per query measured at every shift (chosen by the blurred distance)
COARSE_SIZE = 16  # the candidates are chosen on 16x16 thumbnails, at every shift of up to the same share
NEIGHBOURS = 10  # photos whose mean distance the relative test divides by
COPY_QUANTILE = 0.01  # near-copy = closer than about 99 % of genuinely new real photos come
RATIO_CAP = 0.5  # the relative test never flags an image less than twice as close to one photo as to the rest
DUPLICATE_FLOOR = 0.5 / 255  # distances below this are exact duplicates in the data, not a scale
# A conditional generator's filter's per-class copy limits: the 90 % upper confidence bound of the 1 % quantile.
# From the 30 photos of a class the estimate let 5-6 % near-copies of its sandals through (bench/README.md, #19);
# from thousands the bound is the estimate. The report measures with the estimate.
FILTER_CONFIDENCE = 0.9
QUERY_CHUNK = 64


@dataclass
class CopyReference:
    """The images a near-copy may be a copy of, and which training photo each one shows.

    ``images``: uint8 [M, C, H, W] (the photos, their mirror images, then any augmented copies);
    ``owner``: [M] index of the photo each image shows; ``photos``: the number of photos.
    """

    images: torch.Tensor
    owner: torch.Tensor
    photos: int


def build_reference(photos: torch.Tensor, augmented: torch.Tensor | None = None) -> CopyReference:
    """The photos, their mirror images and (optionally) their augmented copies.

    ``augmented`` is :func:`augment.augment_dataset`'s output for these photos: the
    photos themselves first, then copy 1 of every photo, copy 2, ...
    """
    n = len(photos)
    parts, owners = [photos, photos.flip(-1)], [torch.arange(n), torch.arange(n)]
    if augmented is not None and len(augmented) > n:
        if augmented.shape[1:] != photos.shape[1:] or not torch.equal(augmented[:n], photos):
            raise ValueError("the augmented set must start with the photos themselves (augment_dataset's layout)")
        extra = augmented[n:]
        parts.append(extra)
        owners.append(torch.arange(len(extra)) % n)
    return CopyReference(images=torch.cat(parts), owner=torch.cat(owners), photos=n)


@dataclass
class Nearest:
    """Per query image: ``distance`` to the nearest photo, that ``photo``, and the relative ``ratio``."""

    distance: torch.Tensor
    photo: torch.Tensor
    ratio: torch.Tensor


def _unit(images: torch.Tensor) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"expected uint8 [N,C,H,W] images, got {images.dtype} {tuple(images.shape)}")
    return images.float() / 255.0


def _thumbnails(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(COARSE_SIZE, COARSE_SIZE), mode="area") if x.shape[-1] > COARSE_SIZE else x


def _coarse_distances(q: torch.Tensor, ref: torch.Tensor, border: int) -> torch.Tensor:
    """[len(q), len(ref)] RMS distances of thumbnails, the smallest over shifts of up to ``border`` thumbnail pixels."""
    h, w = q.shape[-2:]
    target = ref[..., border : h - border, border : w - border].flatten(1)
    best: torch.Tensor | None = None
    for dy in range(-border, border + 1):
        for dx in range(-border, border + 1):
            window = q[..., border + dy : h - border + dy, border + dx : w - border + dx].flatten(1)
            d = torch.cdist(window, target)
            best = d if best is None else torch.minimum(best, d)
    assert best is not None  # border >= 0: at least one shift
    return best / math.sqrt(target.shape[1])


def nearest_photos(
    query: torch.Tensor, reference: CopyReference, *, exclude: torch.Tensor | None = None, shift: int = SHIFT
) -> Nearest:
    """Each query image's nearest photo (over mirrors, augmented copies and shifts); see the module docstring.

    ``exclude``: optional bool [len(query), photos]; True = that photo may not be the match
    (used leave-one-out). Distances to excluded-only rows are ``inf``.
    """
    if query.shape[1:] != reference.images.shape[1:]:
        raise ValueError(f"image shapes differ: {tuple(query.shape[1:])} vs {tuple(reference.images.shape[1:])}")
    h, w = query.shape[-2:]
    shift = max(0, min(shift, (min(h, w) - 1) // 4))
    ref = _unit(reference.images)
    ref_thumbs = _thumbnails(ref)
    border = math.ceil(shift * ref_thumbs.shape[-1] / w) if shift else 0
    ref_windows = ref[..., shift : h - shift, shift : w - shift]
    owner = reference.owner
    out_d, out_p, out_r = [], [], []
    for start in range(0, len(query), QUERY_CHUNK):
        q = _unit(query[start : start + QUERY_CHUNK])
        coarse = _coarse_distances(_thumbnails(q), ref_thumbs, border)  # [n, M]
        if exclude is not None:
            coarse[exclude[start : start + len(q)][:, owner]] = float("inf")
        per_photo = torch.full((len(q), reference.photos), float("inf")).scatter_reduce(
            1, owner.expand(len(q), -1), coarse, reduce="amin"
        )
        k = min(CANDIDATES, coarse.shape[1])
        cand_d, cand = coarse.topk(k, dim=1, largest=False)
        targets = ref_windows[cand].flatten(2)  # [n, k, D]
        target_sq = targets.square().sum(dim=2)
        best = torch.full((len(q), k), float("inf"))
        best_shift = torch.zeros((len(q), k), dtype=torch.long)
        offsets = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]
        for i, (dy, dx) in enumerate(offsets):
            window = q[..., shift + dy : h - shift + dy, shift + dx : w - shift + dx].flatten(1)  # [n, D]
            dot = torch.bmm(targets, window[:, :, None]).squeeze(2)
            d = window.square().sum(dim=1, keepdim=True) + target_sq - 2 * dot  # squared, up to rounding
            better = d < best
            best = torch.where(better, d, best)
            best_shift[better] = i
        best[torch.isinf(cand_d)] = float("inf")
        which = best.argmin(dim=1)
        rows = torch.arange(len(q))
        # The winner's distance again, from the pixel differences themselves: an exact copy measures 0.
        distance = torch.empty(len(q))
        for i, (dy, dx) in enumerate(offsets):
            sel = best_shift[rows, which] == i
            if sel.any():
                window = q[sel][..., shift + dy : h - shift + dy, shift + dx : w - shift + dx].flatten(1)
                distance[sel] = (window - targets[rows[sel], which[sel]]).square().mean(dim=1).sqrt()
        distance[torch.isinf(best[rows, which])] = float("inf")
        photo = owner[cand.gather(1, which[:, None]).squeeze(1)]
        others = per_photo.scatter(1, photo[:, None], float("inf"))
        m = min(NEIGHBOURS, max(1, reference.photos - 1))
        next_mean = others.topk(m, dim=1, largest=False).values.mean(dim=1)
        ratio = torch.where(
            torch.isfinite(next_mean) & (next_mean > 0), distance / next_mean, torch.ones_like(distance)
        )
        out_d.append(distance)
        out_p.append(photo)
        out_r.append(ratio)
    if not out_d:
        empty = torch.empty(0)
        return Nearest(empty, torch.empty(0, dtype=torch.long), empty)
    return Nearest(torch.cat(out_d), torch.cat(out_p), torch.cat(out_r))


def lognormal_quantile(values: torch.Tensor, q: float, confidence: float | None = None) -> float:
    """The ``q`` quantile of a log-normal fitted to positive ``values`` (steadier than the empirical one).

    ``confidence`` (e.g. 0.9): instead, the upper confidence bound of that quantile at that level (the estimate's
    standard error, in log units, ``spread * sqrt(1/n + z^2 / (2 (n - 1)))``): it comes down to the estimate as
    ``values`` grow, and sits well above it for a few tens."""
    logs = values.double().log()
    z = NormalDist().inv_cdf(q)
    spread = logs.std().item() if len(logs) > 1 else 0.0
    if confidence is not None and len(logs) > 1:
        n = len(logs)
        z += NormalDist().inv_cdf(confidence) * math.sqrt(1 / n + z * z / (2 * (n - 1)))
    return math.exp(logs.mean().item() + z * spread)


def order_statistic_bound(values: torch.Tensor, q: float, confidence: float) -> float:
    """A distribution-free upper confidence bound of the ``q`` quantile: the smallest of the sorted ``values``
    that at least the ``q`` quantile's share of ``values`` falls below with probability ``confidence`` (the
    binomial count of values below the true quantile)."""
    ordered = values.double().sort().values
    n, k = len(ordered), torch.arange(len(ordered), dtype=torch.float64)
    log_pmf = (
        math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1) + k * math.log(q) + (n - k) * math.log1p(-q)
    )
    cdf = log_pmf.exp().cumsum(0)  # binomial: P(at most k values fall below the true quantile)
    index = int(torch.searchsorted(cdf, torch.tensor([confidence], dtype=torch.float64)))
    return ordered[min(index, n - 1)].item()


def lower_quantile(values: torch.Tensor, q: float, confidence: float | None = None) -> float:
    """The smaller of the log-normal and the empirical ``q`` quantile.

    The log-normal fit uses every value (steady); the empirical quantile guards against a
    heavier lower tail than the fit has (classes with many look-alike photos, e.g. emoji).
    ``confidence``: the upper confidence bound of each at that level instead (:func:`lognormal_quantile`,
    :func:`order_statistic_bound`), for a limit that must not come out too low from few photos.
    """
    if confidence is None:
        return min(lognormal_quantile(values, q), torch.quantile(values.double(), q).item())
    return min(lognormal_quantile(values, q, confidence), order_statistic_bound(values, q, confidence))


@dataclass
class CopyThresholds:
    """The two near-copy thresholds and how they were calibrated."""

    distance: float
    ratio: float
    calibration_images: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "copy": round(self.distance, 6),
            "copy_ratio": round(self.ratio, 6),
            "copy_source": "every real photo against the training photos (leave-one-out), mirrors and 2-px shifts",
            "copy_calibration_images": self.calibration_images,
        }


def calibrate(
    train: torch.Tensor,
    heldout: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
    augmented: torch.Tensor | None = None,
    confidence: float | None = None,
) -> CopyThresholds:
    """Thresholds from every real photo measured against the training photos (leave-one-out).

    ``confidence`` (:data:`FILTER_CONFIDENCE`, a conditional generator's filter): each threshold is the upper
    confidence bound of the 1 % quantile at that level rather than its estimate (:func:`lower_quantile`). From a
    few tens of photos the estimate is noisy, and one that comes out low lets copies through; one that comes out
    high only costs another sample. None: the estimate.

    Each photo, training and held-out alike, is measured against the training photos, their
    mirrors and (``augmented``) their augmented copies, leaving out its own near-duplicate group
    and all its copies: the same pool a generated image is measured against, so the 1 % quantile
    means what it says (a denser pool, e.g. with augmented copies, brings every image closer).
    ``groups``: [N] near-duplicate group per photo of ``train`` then ``heldout``
    (:func:`dedupe.duplicate_groups`); default: each its own.
    """
    real = train if heldout is None or not len(heldout) else torch.cat([train, heldout])
    if len(real) < 2 or len(train) < 1:
        raise ValueError("need at least two real images to calibrate the copy threshold")
    groups = torch.arange(len(real)) if groups is None else groups
    exclude = groups[:, None] == groups[None, : len(train)]
    found = nearest_photos(real, build_reference(train, augmented), exclude=exclude)
    usable = torch.isfinite(found.distance) & (found.distance > DUPLICATE_FLOOR)
    if usable.sum() < 2:  # every photo a duplicate of another: only exact copies count
        return CopyThresholds(distance=DUPLICATE_FLOOR, ratio=0.0, calibration_images=0)
    distance = lower_quantile(found.distance[usable], COPY_QUANTILE, confidence)
    ratio = min(RATIO_CAP, lower_quantile(found.ratio[usable].clamp_min(1e-6), COPY_QUANTILE, confidence))
    return CopyThresholds(distance=max(distance, DUPLICATE_FLOOR), ratio=ratio, calibration_images=int(usable.sum()))


def is_copy(found: Nearest, thresholds: CopyThresholds) -> torch.Tensor:
    """Bool per image: a near-copy by the absolute or the relative test."""
    return (found.distance < thresholds.distance) | (found.ratio < thresholds.ratio)


def detect(
    generated: torch.Tensor,
    reference: CopyReference,
    thresholds: CopyThresholds,
    *,
    worst: int = 8,
    found: Nearest | None = None,
) -> dict[str, Any]:
    """Near-copies among ``generated`` (``found``: :func:`nearest_photos` already computed for them).

    Returns ``{"share", "count", "distances", "nearest", "ratios", "is_copy", "worst"}``;
    ``worst`` holds the ``worst`` closest pairs, closest first, as
    ``{"generated": i, "train": photo index, "distance": d}``.
    """
    found = found if found is not None else nearest_photos(generated, reference)
    flags = is_copy(found, thresholds)
    order = torch.argsort(found.distance)[:worst]
    return {
        "share": flags.float().mean().item() if len(generated) else 0.0,
        "count": int(flags.sum()),
        "distances": found.distance.tolist(),
        "nearest": found.photo.tolist(),
        "ratios": found.ratio.tolist(),
        "is_copy": flags.tolist(),
        "worst": [
            {"generated": int(i), "train": int(found.photo[i]), "distance": round(float(found.distance[i]), 6)}
            for i in order
        ],
    }


def mann_whitney_z(a: torch.Tensor, b: torch.Tensor) -> float:
    """z of the Mann-Whitney U statistic of ``a`` against ``b`` (normal approximation, ties corrected).

    Negative: values of ``a`` tend to be smaller than those of ``b``.
    """
    n1, n2 = len(a), len(b)
    values = torch.cat([a.double(), b.double()])
    order = torch.argsort(values)
    sorted_values = values[order]
    ranks = torch.empty_like(values)
    unique, inverse, counts = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2  # average 1-based rank of each tied run
    ranks[order] = mean_rank[inverse]
    u = ranks[:n1].sum().item() - n1 * (n1 + 1) / 2
    n = n1 + n2
    tie_term = ((counts.double() ** 3 - counts.double()).sum().item()) / (n * (n - 1))
    variance = n1 * n2 / 12 * ((n + 1) - tie_term)
    return 0.0 if variance <= 0 else (u - n1 * n2 / 2) / math.sqrt(variance)


def memorisation_test(generated_distances: torch.Tensor, heldout_distances: torch.Tensor) -> dict[str, float]:
    """Meehan et al.'s data-copying test: ``{"z", "p_value", "generated_median", "heldout_median"}``.

    ``p_value`` is one-sided: the chance of a z this low if the generated images were as far from
    the training photos as new real photos are.
    """
    z = mann_whitney_z(generated_distances, heldout_distances)
    return {
        "z": z,
        "p_value": 0.5 * math.erfc(-z / math.sqrt(2)),
        "generated_median": generated_distances.median().item(),
        "heldout_median": heldout_distances.median().item(),
    }


def save_copies_grid(report: dict[str, Any], generated: torch.Tensor, train: torch.Tensor, path: Path) -> None:
    """The report's closest (generated | training photo) pairs side by side, when it found any."""
    pairs = report.get("worst_copies") or []
    if pairs:
        side_by_side = torch.stack([img for p in pairs for img in (generated[p["generated"]], train[p["train"]])])
        save_grid(side_by_side, path, columns=2)
