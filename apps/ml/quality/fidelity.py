"""Realism and distances of generated images next to fresh real photos, at the same number of images.

The quality report's fidelity measures (see :mod:`report`): the sliced Wasserstein distance on
Laplacian-pyramid patches, FID and KID in the features of a small CNN, and precision / recall / density /
coverage (:mod:`realism`), each with a ``reference``: what fresh photos (held out, or else half of the
training photos) score in the same measurement, the generated side subsampled to their number.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from apps.ml.quality import metrics, realism
from apps.ml.quality.classifier import ClassifierSettings
from apps.ml.quality.images import split
from apps.ml.quality.usefulness import metric

MIN_FRESH = 6  # fewer fresh real photos than this: realism is not measured
REPEATS = 10  # subsample draws for the size-matched SWD and FID


def _round(x: float) -> float:
    return round(float(x), 6)


def _std(values: list[float]) -> float:
    return _round(statistics.stdev(values)) if len(values) > 1 else 0.0


Distance = Callable[[torch.Tensor, torch.Tensor, int], list[float]]  # (base, images, seed) -> one number a level


def _swd_levels(base: torch.Tensor, images: torch.Tensor, seed: int) -> list[float]:
    """The sliced Wasserstein distance of each pyramid level, finest first."""
    levels: list[float] = metrics.sliced_wasserstein(base, images, seed=seed)["levels"]
    return levels


def _fid(base: torch.Tensor, images: torch.Tensor, seed: int) -> list[float]:
    """The Frechet distance (no draws: ``seed`` unused), as a one-number list."""
    return [metrics.frechet_distance(base, images)]


def _matched_distance(
    distance: Distance, base: torch.Tensor, generated: torch.Tensor, fresh: torch.Tensor, seed: int
) -> dict[str, Any]:
    """``distance(base, X)`` for X = generated images subsampled to ``len(fresh)``, repeated, vs X = fresh.

    ``distance`` returns a list of numbers (one per pyramid level, or just one). ``value`` and
    ``reference`` are the means over the repeats of each list's mean; with more than one number,
    ``levels`` and ``reference_levels`` hold each position's mean over the repeats.
    """
    gen = torch.Generator().manual_seed(seed)
    n = min(len(fresh), len(generated))
    values, references = [], []
    for r in range(REPEATS):
        pick = generated[torch.randperm(len(generated), generator=gen)[:n]]
        values.append(distance(base, pick, seed + r))
        references.append(distance(base, fresh[:n] if n < len(fresh) else fresh, seed + r))
    means, ref_means = [statistics.fmean(v) for v in values], [statistics.fmean(v) for v in references]
    out = metric(
        statistics.fmean(means),
        std=_std(means),
        reference=_round(statistics.fmean(ref_means)),
        reference_std=_std(ref_means),
        images=n,
    )
    if len(values[0]) > 1:
        out["levels"] = [_round(statistics.fmean(v[i] for v in values)) for i in range(len(values[0]))]
        out["reference_levels"] = [_round(statistics.fmean(v[i] for v in references)) for i in range(len(values[0]))]
    return out


def fresh_split(
    train: torch.Tensor, heldout: torch.Tensor | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(base, fresh, against): the photos distances are measured to, and the unseen ones."""
    if heldout is not None and len(heldout) >= MIN_FRESH:
        return train, heldout, "held-out photos"
    if len(train) >= 2 * MIN_FRESH:
        base, fresh = split(train, holdout=0.5, seed=seed)
        return base, fresh, "half of the training photos (too few photos to keep any back)"
    return train, None, ""


def measure(
    generated: torch.Tensor,
    base: torch.Tensor,
    fresh: torch.Tensor | None,
    negatives: list[torch.Tensor],
    seed: int,
    settings: ClassifierSettings | None,
) -> dict[str, Any]:
    """swd, fid, kid and precision / recall / density / coverage, each with its size-matched reference."""
    out: dict[str, Any] = {}
    not_measured = "needs at least six real photos the generator did not learn from"
    if fresh is not None:
        out["swd"] = _matched_distance(_swd_levels, base, generated, fresh, seed)
    else:
        out["swd"] = metric(metrics.sliced_wasserstein(base, generated, seed=seed)["mean"])
    if len(generated) < 3 or len(base) < 3:
        reason = "needs at least three generated and three real images"
        return out | {k: metric(None, reason) for k in ("fid", "kid", *realism.NAMES)}
    net = metrics.train_feature_net(base, negatives, seed=seed, settings=settings)
    f_base, f_gen = net(base), net(generated)
    if fresh is None:
        out["fid"] = metric(metrics.frechet_distance(f_base, f_gen), features=net.task)
        out["kid"] = metric(metrics.kernel_distance(f_base, f_gen, seed=seed), features=net.task)
        return out | {k: metric(None, not_measured) for k in realism.NAMES}
    f_fresh = net(fresh)
    out["fid"] = _matched_distance(_fid, f_base, f_gen, f_fresh, seed)
    out["fid"]["features"] = net.task
    out["kid"] = metric(
        metrics.kernel_distance(f_base, f_gen, seed=seed),
        features=net.task,
        reference=_round(metrics.kernel_distance(f_base, f_fresh, seed=seed)),
    )
    # Realism and coverage in self-supervised features of the class's own photos (which way up is
    # a picture): a net trained against other classes may ignore what makes a picture realistic.
    own = net if net.task == "rotation" else metrics.train_feature_net(base, None, seed=seed, settings=settings)
    for name, values in realism.matched(own(fresh), own(generated), own(base), seed=seed).items():
        out[name] = metric(
            values["value"],
            std=_round(values["std"]),
            reference=_round(values["reference"]),
            reference_std=_round(values["reference_std"]),
            images=values["images"],
        )
    return out
