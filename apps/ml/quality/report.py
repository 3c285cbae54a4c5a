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

import torch

from apps.ml.quality import copies, filtering, metrics, realism
from apps.ml.quality.usefulness import ARMS, ClassifierSettings, metric, split, usefulness_test

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
MIN_FRESH = 6  # fewer fresh real photos than this: realism is not measured
REPEATS = 10  # subsample draws for the size-matched SWD and FID

ADVICE = {
    "mostly noise": "Train longer (the standard or long preset) or with more images.",
    "copies your photos": "Use fewer training steps (the quick preset), turn augmentation on, or add more images.",
    "not realistic yet": "Train longer (the standard or long preset), turn augmentation on, or add more images; "
    "a diffusion model (ddim) often does better on small sets.",
    "repeats itself": "Train again with augmentation on or more images; for a GAN try the standard preset or ddim.",
    POSITIVE_VERDICT: "",
}


def _ratio(number: dict, key: str = "reference") -> float | None:
    value, reference = number.get("value"), number.get(key)
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def _texture_ratio(swd: dict) -> float | None:
    """Finest-level (full-resolution detail) SWD of the generated images over new real photos'."""
    levels, reference = swd.get("levels"), swd.get("reference_levels")
    if not levels or not reference or reference[0] <= 0:
        return None
    return levels[0] / reference[0]


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


def _matched_distance(distance, base, generated, fresh, seed: int) -> dict:
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
    std = lambda v: _round(statistics.stdev(v)) if len(v) > 1 else 0.0  # noqa: E731
    means, ref_means = [statistics.fmean(v) for v in values], [statistics.fmean(v) for v in references]
    out = metric(
        statistics.fmean(means),
        std=std(means),
        reference=_round(statistics.fmean(ref_means)),
        reference_std=std(ref_means),
        images=n,
    )
    if len(values[0]) > 1:
        out["levels"] = [_round(statistics.fmean(v[i] for v in values)) for i in range(len(values[0]))]
        out["reference_levels"] = [_round(statistics.fmean(v[i] for v in references)) for i in range(len(values[0]))]
    return out


def _fresh_split(train, heldout, seed) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(base, fresh, against): the photos distances are measured to, and the unseen ones."""
    if heldout is not None and len(heldout) >= MIN_FRESH:
        return train, heldout, "held-out photos"
    if len(train) >= 2 * MIN_FRESH:
        base, fresh = split(train, holdout=0.5, seed=seed)
        return base, fresh, "half of the training photos (too few photos to keep any back)"
    return train, None, ""


def _fidelity(generated, base, fresh, negatives, seed, settings) -> dict:
    """swd, fid, kid and precision / recall / density / coverage, each with its size-matched reference."""
    out = {}
    not_measured = "needs at least six real photos the generator did not learn from"
    swd = lambda a, b, s: metrics.sliced_wasserstein(a, b, seed=s)["levels"]  # noqa: E731
    if fresh is not None:
        out["swd"] = _matched_distance(swd, base, generated, fresh, seed)
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
    out["fid"] = _matched_distance(lambda a, b, s: [metrics.frechet_distance(a, b)], f_base, f_gen, f_fresh, seed)
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
    sampling: dict | None = None,
    worst: int = 8,
) -> dict:
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
    negatives = [n for n in (negatives or []) if len(n)]
    if negatives and negatives_heldout is None:
        parts = [split(n, holdout=0.3, seed=seeds[0]) for n in negatives]
        negatives, negatives_heldout = [p[0] for p in parts], [p[1] for p in parts]
    negatives_heldout = negatives_heldout or []

    reference = filtering.build_reference(train, heldout, augmented)
    nearest = copies.nearest_photos(generated, reference.copy_reference)  # once, for the filter and the report
    checked = filtering.score_images(generated, reference, drop_copies=True, found=nearest)
    found = copies.detect(generated, reference.copy_reference, reference.copy_thresholds, worst=worst, found=nearest)
    noise_share = (checked.dropped["noise"] + checked.dropped["blank"]) / len(generated)
    diversity = metrics.diversity_ratio(generated, train) if len(generated) >= 2 else None
    kept = generated[checked.keep]

    if heldout is not None and len(heldout) >= MIN_FRESH:
        held = copies.nearest_photos(heldout, reference.copy_reference).distance
        test = copies.memorisation_test(torch.tensor(found["distances"]), held)
        memorisation = metric(
            test["z"],
            p_value=_round(test["p_value"]),
            generated_median=_round(test["generated_median"]),
            heldout_median=_round(test["heldout_median"]),
        )
    else:
        memorisation = metric(None, "needs at least six held-out photos")

    base, fresh, against = _fresh_split(train, heldout, seeds[0])
    fidelity = _fidelity(generated, base, fresh, negatives, seeds[0], settings)
    name, explanation = verdict(
        noise_share=noise_share,
        copy_share=found["share"],
        diversity=diversity,
        memorisation=memorisation["value"],
        precision_ratio=_ratio(fidelity["precision"]),
        texture_ratio=_texture_ratio(fidelity["swd"]),
        coverage_ratio=_ratio(fidelity["coverage"]),
    )
    report: dict = {
        "verdict": name,
        "explanation": explanation,
        "advice": ADVICE[name],
        "realism_against": against or None,
    }
    report |= {k: fidelity[k] for k in realism.NAMES}
    report["diversity"] = metric(diversity, "needs at least two generated images")
    report["copy_share"] = metric(
        found["share"],
        threshold=_round(reference.copy_threshold),
        ratio_threshold=_round(reference.copy_thresholds.ratio),
    )
    report["memorisation"] = memorisation
    report["noise_share"] = metric(noise_share)
    report |= {k: fidelity[k] for k in ("swd", "fid", "kid")}

    if not measure_usefulness or heldout is None:
        reason = (
            "the usefulness test was turned off"
            if not measure_usefulness
            else "no held-out real images of this class to test on"
        )
        report["usefulness"] = {k: metric(None, reason) for k in (*ARMS, "gqi", "credit")}
    else:
        report["usefulness"] = usefulness_test(
            real_train=train,
            real_test=heldout,
            synthetic=kept,
            negatives_train=negatives,
            negatives_test=negatives_heldout,
            extra_real=extra_real,
            seeds=seeds,
            settings=settings,
        )

    report["sampling"] = sampling or {}
    report["delivered"] = {
        "count": len(kept),
        "diversity": metric(
            metrics.diversity_ratio(kept, train) if len(kept) >= 2 else None, "fewer than two images pass the filter"
        ),
        "copy_share": metric(
            statistics.fmean(c for c, k in zip(found["is_copy"], checked.keep.tolist()) if k) if len(kept) else None,
            "no image passes the filter",
        ),
    }
    report["filter"] = {
        "checked": len(generated),
        "kept": len(kept),
        "dropped": checked.dropped,
        "thresholds": reference.thresholds(),
    }
    report["worst_copies"] = [{**pair, "is_copy": bool(found["is_copy"][pair["generated"]])} for pair in found["worst"]]
    report["thresholds"] = {
        "noise_alarm": NOISE_ALARM,
        "copy_alarm": COPY_ALARM,
        "memorisation_alarm": MEMORISATION_ALARM,
        "realism_alarm": REALISM_ALARM,
        "texture_alarm": TEXTURE_ALARM,
        "realistic": REALISTIC,
        "coverage_alarm": COVERAGE_ALARM,
        "diversity_alarm": DIVERSITY_ALARM,
    }
    report["counts"] = {
        "generated": len(generated),
        "train": len(train),
        "heldout": 0 if heldout is None else len(heldout),
        "negative_classes": len(negatives),
        "seeds": list(seeds),
    }
    return report
