"""The quality report of a trained generator: one JSON-serialisable dict.

:func:`quality_report` measures a sample of generated images against the real
ones and sums it up in a plain-language ``verdict``.

Shape of every measured number (see :func:`usefulness.metric`)::

    {"value": 0.93, "reason": null, ...extra}     # measured
    {"value": null, "reason": "why not"}          # could not be measured

Real photos come in two roles: the **training** photos the generator learnt, and
**fresh** photos it never saw (the held-out photos; without them, half of the
training photos stand in, and ``realism_against`` says so). Every ``reference``
is what the fresh photos score in the same measurement, at the same number of
images as the generated side (subsampled and repeated: ``std`` and
``reference_std``), so a generated set and new real photos are compared like with like.

Top-level keys:

- ``verdict``: one of :data:`VERDICTS`; ``explanation``: one sentence for non-experts;
  ``advice``: what to do about it (empty for the positive verdict).
- ``precision`` / ``recall`` / ``density`` / ``coverage``: realism and coverage (see
  :mod:`realism`) in the features of a small CNN that learnt which way up the user's
  photos are (self-supervised, so what it sees does not depend on the other classes at hand),
  with ``reference``.
- ``diversity``: *pixel* variety of the generated images over that of the training
  photos (mean pairwise pixel distance; 1 = as varied). It cannot see dropped modes
  (``coverage`` can) and noise scores above 1; it only catches a generator that keeps
  making nearly the same picture.
- ``copy_share``: share of near-copies of a training photo, its mirror image or an
  augmented copy, at small shifts (see :mod:`copies`); ``memorisation``: the z of
  Meehan et al.'s data-copying test (about 0: as far from the training photos as new
  photos are; strongly negative: memorised).
- ``noise_share``: share flagged as mostly noise or blank by :mod:`filtering`.
- ``swd``: sliced Wasserstein distance on Laplacian-pyramid patches (x1000; ``levels`` and
  ``reference_levels`` finest first; the finest is the realism of edges and texture);
  ``fid`` / ``kid``: Frechet / kernel distance in the features of a small CNN trained
  on the user's images (``features`` says how it learnt). Lower is closer.
- ``usefulness``: see :mod:`usefulness` (arms, chance-corrected ``gqi``, ``credit``
  beyond augmentation with its interval and words).
- ``negatives``: where the "not this class" images came from (set by the caller).
- ``sampling``: how the report's images were sampled (the generation default).
- ``delivered``: what the filter keeps: ``count``, ``diversity``, ``copy_share``.
- ``filter``: thresholds, images checked, and drops per reason.
- ``worst_copies``: the closest (generated, training) pairs, closest first, as
  ``{"generated": i, "train": j, "distance": d, "is_copy": bool}``; ``i`` and
  ``j`` index the ``generated`` and ``train`` tensors passed in.
- ``thresholds``: the alarm levels the verdict used; ``counts``: images used.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from apps.ml.quality import copies, fidelity, filtering, metrics, realism
from apps.ml.quality.classifier import ClassifierSettings
from apps.ml.quality.images import split
from apps.ml.quality.usefulness import ARMS, metric, usefulness_test

VERDICTS = ("varied and new", "not realistic yet", "repeats itself", "copies your photos", "mostly noise")
POSITIVE_VERDICT = "varied and new"

NOISE_ALARM = 0.5  # at least this share of images noise or blank -> "mostly noise"
COPY_ALARM = 0.10  # at least this share near-copies -> "copies your photos"
MEMORISATION_ALARM = -4.0  # data-copying z below this -> "copies your photos" (generated far closer than new photos)
REALISM_ALARM = 0.5  # precision below this share of new real photos' -> "not realistic yet"
TEXTURE_ALARM = 1.6  # finest-detail SWD over this multiple of new real photos' -> "not realistic yet"
REALISTIC = 0.9  # precision at least this share of new real photos': the images themselves look real
COVERAGE_ALARM = 0.5  # coverage below this share of new real photos' -> "repeats itself"
DIVERSITY_ALARM = 0.7  # pixel variety below this share of the real images' -> "repeats itself"

ADVICE = {
    "mostly noise": "Train longer (the standard or long preset) or with more images.",
    "copies your photos": "Use fewer training steps (the quick preset), turn augmentation on, or add more images.",
    "not realistic yet": "Train longer (the standard or long preset), turn augmentation on, or add more images; "
    "a diffusion model (ddim) often does better on small sets.",
    "repeats itself": "Train again with augmentation on or more images; for a GAN try the standard preset or ddim.",
    POSITIVE_VERDICT: "",
}


def _ratio(number: dict[str, Any], key: str = "reference") -> float | None:
    value, reference = number.get("value"), number.get(key)
    if value is None or reference is None or reference <= 0:
        return None
    ratio: float = value / reference
    return ratio


def _texture_ratio(swd: dict[str, Any]) -> float | None:
    """Finest-level (full-resolution detail) SWD of the generated images over new real photos'."""
    levels, reference = swd.get("levels"), swd.get("reference_levels")
    if not levels or not reference or reference[0] <= 0:
        return None
    ratio: float = levels[0] / reference[0]
    return ratio


def verdict(
    *,
    noise_share: float,
    copy_share: float,
    diversity: float | None,
    memorisation: float | None = None,
    precision_ratio: float | None = None,
    texture_ratio: float | None = None,
    coverage_ratio: float | None = None,
) -> tuple[str, str]:
    """(verdict, one-sentence explanation), worst problem first.

    Order: noise, near-copies, a collapse onto a few realistic pictures (high precision, low
    coverage), realism, the data-copying test (only meaningful for realistic images: blurry ones
    sit closer to everything), coverage, pixel variety.
    The positive verdict needs every check that could be measured to pass: noise, copies,
    realism (precision, and the finest level of the SWD, next to new real photos'), coverage and
    pixel variety. The SWD's other levels, FID and KID are reported but not judged: they mix
    realism with variety (a collapsed generator scores as badly as an unrealistic one).
    """
    if noise_share >= NOISE_ALARM:
        return "mostly noise", (
            f"{noise_share:.0%} of the generated images are noise or blank instead of pictures; "
            "the generator has not learnt your images yet."
        )
    if copy_share >= COPY_ALARM:
        return "copies your photos", (
            f"{copy_share:.0%} of the generated images are near-copies of your own photos (counting mirror images "
            "and small shifts), so the generator memorised them instead of making new ones."
        )
    # Realistic images that cover little: a collapse. Checked before the texture test, which a
    # handful of repeated pictures fails too (their patches are few, not unreal).
    if (
        coverage_ratio is not None
        and coverage_ratio < COVERAGE_ALARM
        and precision_ratio is not None
        and precision_ratio >= REALISTIC
    ):
        return "repeats itself", (
            f"The generated images look real but reach only {coverage_ratio:.0%} of the variety new photos of this "
            "thing show: the generator keeps making a few pictures."
        )
    if precision_ratio is not None and precision_ratio < REALISM_ALARM:
        return "not realistic yet", (
            f"The generated images do not look like your photos yet: only {precision_ratio:.0%} as many of them "
            "fall among real photos of this thing as new real photos do."
        )
    if texture_ratio is not None and texture_ratio > TEXTURE_ALARM:
        return "not realistic yet", (
            "The generated images do not look like your photos yet: their fine detail (edges, outlines, texture) "
            f"is {texture_ratio:.1f} times as far from your photos' as new photos' is; they look blurred or smeared."
        )
    # Only for realistic images: blurry ones sit closer to everything, the training photos too.
    if memorisation is not None and memorisation < MEMORISATION_ALARM:
        return "copies your photos", (
            "The generated images sit much closer to your training photos than new photos of the same thing do "
            f"(data-copying test z = {memorisation:.1f}): the generator is reproducing what it saw."
        )
    if coverage_ratio is not None and coverage_ratio < COVERAGE_ALARM:
        return "repeats itself", (
            f"The generated images reach only {coverage_ratio:.0%} of the variety new photos of this thing show: "
            "the generator leaves out much of what your photos hold."
        )
    if diversity is not None and diversity < DIVERSITY_ALARM:
        return "repeats itself", (
            f"The generated images are only {diversity:.0%} as varied as your photos: "
            "the generator keeps making nearly the same picture."
        )
    checks = "realistic and varied next to new photos of the same thing" if precision_ratio is not None else "varied"
    return POSITIVE_VERDICT, (
        f"The generated images are {checks}, and new: only {copy_share:.0%} are near-copies of your photos."
    )


def _round(x: float) -> float:
    return round(float(x), 6)


def _split_negatives(
    negatives: list[torch.Tensor] | None, negatives_heldout: list[torch.Tensor] | None, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(train, test) "not this class" images: the non-empty sets, each split 70/30 unless the test sets are given."""
    negatives = [n for n in (negatives or []) if len(n)]
    if negatives and negatives_heldout is None:
        parts = [split(n, holdout=0.3, seed=seed) for n in negatives]
        negatives, negatives_heldout = [p[0] for p in parts], [p[1] for p in parts]
    return negatives, negatives_heldout or []


def _screen(
    generated: torch.Tensor,
    train: torch.Tensor,
    heldout: torch.Tensor | None,
    augmented: torch.Tensor | None,
    worst: int,
) -> tuple[filtering.FilterReference, filtering.FilterResult, dict[str, Any]]:
    """(reference, the filter's verdicts, the near-copies found): the filter and the copy check, which share the
    generated images' nearest photos."""
    reference = filtering.build_reference(train, heldout, augmented)
    nearest = copies.nearest_photos(generated, reference.copy_reference)  # once, for the filter and the report
    checked = filtering.score_images(generated, reference, drop_copies=True, found=nearest)
    found = copies.detect(generated, reference.copy_reference, reference.copy_thresholds, worst=worst, found=nearest)
    return reference, checked, found


def _filter_summary(
    generated: torch.Tensor, kept: torch.Tensor, checked: filtering.FilterResult, reference: filtering.FilterReference
) -> dict[str, Any]:
    """What the filter checked and kept, its drops per reason and its thresholds."""
    return {
        "checked": len(generated),
        "kept": len(kept),
        "dropped": checked.dropped,
        "thresholds": reference.thresholds(),
    }


def _counts(
    generated: torch.Tensor,
    train: torch.Tensor,
    heldout: torch.Tensor | None,
    negatives: list[torch.Tensor],
    seeds: tuple[int, ...],
) -> dict[str, Any]:
    """The images the report used."""
    return {
        "generated": len(generated),
        "train": len(train),
        "heldout": 0 if heldout is None else len(heldout),
        "negative_classes": len(negatives),
        "seeds": list(seeds),
    }


def _memorisation(
    heldout: torch.Tensor | None, reference: filtering.FilterReference, found: dict[str, Any]
) -> dict[str, Any]:
    """The data-copying test: the generated images' distances to the training photos against new photos'."""
    if heldout is None or len(heldout) < fidelity.MIN_FRESH:
        return metric(None, "needs at least six held-out photos")
    held = copies.nearest_photos(heldout, reference.copy_reference).distance
    test = copies.memorisation_test(torch.tensor(found["distances"]), held)
    return metric(
        test["z"],
        p_value=_round(test["p_value"]),
        generated_median=_round(test["generated_median"]),
        heldout_median=_round(test["heldout_median"]),
    )


def _delivered(
    kept: torch.Tensor, train: torch.Tensor, found: dict[str, Any], checked: filtering.FilterResult
) -> dict[str, Any]:
    """What the filter keeps: how many, how varied, how many near-copies."""
    return {
        "count": len(kept),
        "diversity": metric(
            metrics.diversity_ratio(kept, train) if len(kept) >= 2 else None, "fewer than two images pass the filter"
        ),
        "copy_share": metric(
            statistics.fmean(c for c, k in zip(found["is_copy"], checked.keep.tolist()) if k) if len(kept) else None,
            "no image passes the filter",
        ),
    }


def _usefulness_not_measured(measure_usefulness: bool) -> dict[str, Any]:
    """The ``usefulness`` of a report that does not run the test: turned off, or no held-out photos."""
    reason = (
        "the usefulness test was turned off"
        if not measure_usefulness
        else "no held-out real images of this class to test on"
    )
    return {k: metric(None, reason) for k in (*ARMS, "gqi", "credit")}


def _thresholds() -> dict[str, float]:
    """The alarm levels :func:`verdict` uses."""
    return {
        "noise_alarm": NOISE_ALARM,
        "copy_alarm": COPY_ALARM,
        "memorisation_alarm": MEMORISATION_ALARM,
        "realism_alarm": REALISM_ALARM,
        "texture_alarm": TEXTURE_ALARM,
        "realistic": REALISTIC,
        "coverage_alarm": COVERAGE_ALARM,
        "diversity_alarm": DIVERSITY_ALARM,
    }


def _judged(
    measured: dict[str, Any],
    noise_share: float,
    found: dict[str, Any],
    diversity: float | None,
    memorisation: float | None,
) -> dict[str, Any]:
    """The report's first keys: ``verdict``, ``explanation``, ``advice`` (``realism_against`` left for the caller)."""
    name, explanation = verdict(
        noise_share=noise_share,
        copy_share=found["share"],
        diversity=diversity,
        memorisation=memorisation,
        precision_ratio=_ratio(measured["precision"]),
        texture_ratio=_texture_ratio(measured["swd"]),
        coverage_ratio=_ratio(measured["coverage"]),
    )
    return {"verdict": name, "explanation": explanation, "advice": ADVICE[name]}


def quality_report(
    *,
    generated: torch.Tensor,
    train: torch.Tensor,
    heldout: torch.Tensor | None = None,
    augmented: torch.Tensor | None = None,
    negatives: list[torch.Tensor] | None = None,
    negatives_heldout: list[torch.Tensor] | None = None,
    extra_real: torch.Tensor | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    settings: ClassifierSettings | None = None,
    measure_usefulness: bool = True,
    sampling: dict[str, Any] | None = None,
    worst: int = 8,
) -> dict[str, Any]:
    """Measure ``generated`` against the real images and return the report (module docstring).

    All images are uint8 [N,C,H,W] of one shape. ``train``: the photos the
    generator learnt. ``heldout``: real photos of the class it never saw
    (fresh photos for the references, and the usefulness test set; without it
    usefulness is null). ``augmented``: the augmented training set when the
    generator trained on one (copies of it count as copies). ``negatives``: one
    tensor per other class; unless ``negatives_heldout`` is given each is split
    70/30 into train/test. ``extra_real``: more real photos of the class, for the
    oracle. ``sampling``: recorded as given (e.g. ``{"steps": 20}``).
    """
    if len(generated) == 0:
        raise ValueError("no generated images to report on")
    if len(train) < 2:
        raise ValueError("need at least two training images")
    heldout = heldout if heldout is not None and len(heldout) >= 2 else None
    negatives, negatives_heldout = _split_negatives(negatives, negatives_heldout, seeds[0])

    reference, checked, found = _screen(generated, train, heldout, augmented, worst)
    noise_share = (checked.dropped["noise"] + checked.dropped["blank"]) / len(generated)
    diversity = metrics.diversity_ratio(generated, train) if len(generated) >= 2 else None
    kept = generated[checked.keep]
    memorisation = _memorisation(heldout, reference, found)

    base, fresh, against = fidelity.fresh_split(train, heldout, seeds[0])
    measured = fidelity.measure(generated, base, fresh, negatives, seeds[0], settings)
    report = _judged(measured, noise_share, found, diversity, memorisation["value"])
    report["realism_against"] = against or None
    report |= {k: measured[k] for k in realism.NAMES}
    report |= {
        "diversity": metric(diversity, "needs at least two generated images"),
        "copy_share": metric(
            found["share"],
            threshold=_round(reference.copy_threshold),
            ratio_threshold=_round(reference.copy_thresholds.ratio),
        ),
        "memorisation": memorisation,
        "noise_share": metric(noise_share),
    }
    report |= {k: measured[k] for k in ("swd", "fid", "kid")}
    report["usefulness"] = (
        usefulness_test(
            real_train=train,
            real_test=heldout,
            synthetic=kept,
            negatives_train=negatives,
            negatives_test=negatives_heldout,
            extra_real=extra_real,
            seeds=seeds,
            settings=settings,
        )
        if measure_usefulness and heldout is not None
        else _usefulness_not_measured(measure_usefulness)
    )
    report["sampling"] = sampling or {}
    report["delivered"] = _delivered(kept, train, found, checked)
    report["filter"] = _filter_summary(generated, kept, checked, reference)
    report["worst_copies"] = [{**pair, "is_copy": bool(found["is_copy"][pair["generated"]])} for pair in found["worst"]]
    report["thresholds"] = _thresholds()
    report["counts"] = _counts(generated, train, heldout, negatives, seeds)
    return report
