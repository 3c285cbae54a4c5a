"""What generated images are worth in real photos: place a mixed arm's accuracy on the real photos' learning curve.

The classifier of the usefulness test is trained on fractions of the short classes' real photos (e.g. 25 %,
50 % and 100 %, several seeds each) and on 100 % of them plus generated images (the *mixed* arm). The real
arms trace a learning curve, accuracy against photos; the mixed arm's accuracy, read on that curve, says how
many real photos the generated images are worth: "worth about N more real photos (95 % interval lo-hi)".

**The curve** is log-linear, ``accuracy = intercept + slope * ln(photos)``, fitted by least squares to the
mean accuracy at each size. Learning curves are close to straight in log photos over a small range (here a
factor of 4), and a two-parameter fit stays stable with three points; the saturating power law
``a - b * n**-c`` has three parameters, so it passes through three points exactly and its extrapolation
swings with every seed's noise. On a curve that flattens, the log-linear fit rises past the 100 % point
more steeply than the truth, so it reaches the mixed arm's accuracy at too few photos: the estimate errs
low (on ``0.95 - 0.6 / sqrt(n)`` at 50, 100 and 200 photos, a true 100 more photos read as about 48), never
high. It is meant for gains of up to a few times the photos.

**The interval** comes from a bootstrap over seeds: each draw picks seeds with replacement, the same picks
for every arm (seed *s* of every arm shares the classifier's initialisation and batches, so the draws are
paired, as in :func:`usefulness.credit`), refits the curve and reads the mixed arm's mean on it.

**No gain**: when the mixed arm's mean accuracy is not above the 100 % point's, the answer is no gain (0 more
photos) and ``detectable`` says the smallest gain the test could have seen: half the width of the 95 %
bootstrap interval of (mixed - 100 %) accuracy (about 1.96 standard errors), and what that is in photos on
the fitted curve. A gain whose interval reaches down to 0 photos is reported with verdict "none" too.

Nothing here knows about Django; inputs are plain lists of floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

BOOTSTRAP = 2000

Floats = npt.NDArray[np.float64]


def fit(photos: npt.ArrayLike, accuracy: npt.ArrayLike) -> tuple[float, float]:
    """(intercept, slope) of ``accuracy = intercept + slope * ln(photos)`` by least squares."""
    x = np.log(np.asarray(photos, dtype=float))
    y = np.asarray(accuracy, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def photos_at(accuracy: float, intercept: float, slope: float) -> float:
    """The photos at which the fitted curve reaches ``accuracy`` (inf when the curve does not rise)."""
    if slope <= 0:
        return math.inf
    return math.exp(min((accuracy - intercept) / slope, 700.0))


def _extra_photos(mixed: float, full: float, photos_full: float, intercept: float, slope: float) -> float:
    """Photos beyond ``photos_full`` the mixed accuracy is worth (0 when it is not above the 100 % point)."""
    if mixed <= full:
        return 0.0
    return max(0.0, photos_at(mixed, intercept, slope) - photos_full) if slope > 0 else math.inf


def _quantile(values: Floats, q: float) -> float:
    """A quantile that copes with inf (the nearest order statistic, no interpolation)."""
    ordered = np.sort(values)
    return float(ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))])


def _finite(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, 1)


def _resampled_means(
    arms: Floats, mix: Floats, draws: int, seed: int, resampled: tuple[npt.ArrayLike, npt.ArrayLike] | None
) -> tuple[Floats, Floats]:
    """([sizes, draws] mean accuracies, [draws] mixed means): seeds drawn with replacement, the same picks for
    every arm; or the caller's own draws (``resampled``), checked."""
    if resampled is None:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(mix), size=(draws, len(mix)))
        return arms[:, picks].mean(axis=2), mix[picks].mean(axis=1)
    boot_means, boot_mixed = np.asarray(resampled[0], dtype=float), np.asarray(resampled[1], dtype=float)
    if boot_means.ndim != 2 or boot_means.shape[0] != len(arms) or boot_mixed.shape != boot_means.shape[1:]:
        raise ValueError("resampled: [sizes][draws] accuracies and [draws] mixed means")
    return boot_means, boot_mixed


def _gains(sizes: Floats, boot_means: Floats, boot_mixed: Floats) -> Floats:
    """The extra photos each bootstrap draw is worth, on the curve refitted to that draw."""
    gains = np.empty(len(boot_mixed))
    for d in range(len(boot_mixed)):
        b_intercept, b_slope = fit(sizes, boot_means[:, d])
        gains[d] = _extra_photos(boot_mixed[d], boot_means[-1, d], float(sizes[-1]), b_intercept, b_slope)
    return gains


def _r2(sizes: Floats, means: Floats, intercept: float, slope: float) -> float | None:
    """The fit's R^2 on the mean accuracies (None when they do not vary)."""
    predicted = intercept + slope * np.log(sizes)
    spread = float(((means - means.mean()) ** 2).sum())
    return 1 - float(((means - predicted) ** 2).sum()) / spread if spread > 0 else None


def _words(point: float, full_n: float, half_width: float, detectable_photos: float, low: float, high: float) -> str:
    """The photo equivalent in a sentence: no gain (and what the test could have seen), no curve, or the gain."""
    if point == 0:
        return (
            f"no gain: the mixed arm is not above the accuracy of all {full_n:g} photos; the test could have "
            f"seen a gain of about {half_width:.3f} accuracy"
            + (f", about {detectable_photos:.0f} more real photos" if math.isfinite(detectable_photos) else "")
        )
    if not math.isfinite(point):
        return "the real photos' accuracy does not rise with more photos: no photo count to compare with"
    interval = f"95 % interval {low:.0f}-" + (f"{high:.0f}" if math.isfinite(high) else "unbounded")
    return (
        f"worth about {point:.0f} more real photos ({interval})"
        if low > 0
        else f"no measurable gain: worth about {point:.0f} more real photos, but the {interval} holds 0"
    )


def photo_equivalent(
    photos: Sequence[float],
    accuracy: Sequence[Sequence[float]],
    mixed: Sequence[float],
    *,
    draws: int = BOOTSTRAP,
    seed: int = 0,
    resampled: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> dict[str, Any]:
    """How many more real photos the mixed arm's accuracy is worth, with a 95 % bootstrap interval.

    ``photos``: the real photos at each size (e.g. 25 %, 50 %, 100 % of the short classes' photos), the
    largest last; ``accuracy[i]``: the per-seed accuracies at ``photos[i]``; ``mixed``: the per-seed
    accuracies of 100 % of the photos plus generated images. Every list holds the same seeds in the same
    order. Returns ``photos`` (the point estimate of extra photos; 0 for no gain), ``low`` / ``high``
    (95 % interval; None when unbounded: the resampled curve was flat), ``verdict`` ("gain" when ``low`` >
    0, else "none"), ``accuracy_gain`` (mixed - 100 %), ``detectable`` (the smallest gain the test could
    have seen, in accuracy and in photos), ``fit`` (intercept, slope per doubling of photos, R^2) and
    ``words``.

    ``resampled``: the caller's own bootstrap draws instead of the resampled seeds, as
    (``[sizes][draws]`` mean accuracies, ``[draws]`` mixed means), drawn paired across the arms (e.g.
    over seeds *and* test images, when the few test images are a larger noise than the seeds).
    """
    sizes = np.asarray(photos, dtype=float)
    arms = np.asarray(accuracy, dtype=float)  # [sizes, seeds]
    mix = np.asarray(mixed, dtype=float)
    if len(sizes) < 2 or arms.shape != (len(sizes), len(mix)) or len(mix) < 1:
        raise ValueError("need accuracies at two sizes or more, and the same seeds for every size and the mixed arm")
    if np.any(sizes <= 0) or sizes[-1] != sizes.max():
        raise ValueError("photos must be positive, the 100 % size last")
    full_n = float(sizes[-1])

    means = arms.mean(axis=1)
    intercept, slope = fit(sizes, means)
    full, mixed_mean = float(means[-1]), float(mix.mean())
    point = _extra_photos(mixed_mean, full, full_n, intercept, slope)
    r2 = _r2(sizes, means, intercept, slope)

    boot_means, boot_mixed = _resampled_means(arms, mix, draws, seed, resampled)
    gains, differences = _gains(sizes, boot_means, boot_mixed), boot_mixed - boot_means[-1]
    low, high = _quantile(gains, 0.025), _quantile(gains, 0.975)
    half_width = (_quantile(differences, 0.975) - _quantile(differences, 0.025)) / 2
    detectable_photos = (
        photos_at(full + half_width, intercept, slope) - full_n if slope > 0 and half_width > 0 else math.inf
    )
    return {
        "photos": _finite(point),
        "low": _finite(low),
        "high": _finite(high),
        "verdict": "gain" if low > 0 else "none",
        "accuracy_gain": round(mixed_mean - full, 6),
        "detectable": {"accuracy": round(half_width, 6), "photos": _finite(detectable_photos)},
        "fit": {
            "model": "accuracy = intercept + slope * ln(photos)",
            "intercept": round(intercept, 6),
            "slope_per_doubling": round(slope * math.log(2), 6),
            "r2": None if r2 is None else round(r2, 4),
        },
        "words": _words(point, full_n, half_width, detectable_photos, low, high),
        "draws": len(boot_mixed),
    }
