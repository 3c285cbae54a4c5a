"""The quality report of a trained generator: one JSON-serialisable dict.

:func:`quality_report` measures a sample of generated images against the real
ones and sums it up in a plain-language ``verdict``.

Shape of every measured number (see :func:`usefulness.metric`)::

    {"value": 0.93, "reason": null, ...extra}     # measured
    {"value": null, "reason": "why not"}          # could not be measured

Top-level keys:

- ``verdict``: one of :data:`VERDICTS`; ``explanation``: one sentence for non-experts.
- ``diversity``: generated variety / real variety (1 = as varied, -> 0 = collapse).
- ``copy_share``: share of generated images that are near-copies of a training image.
- ``noise_share``: share flagged as mostly noise or blank by :mod:`filtering`.
- ``swd``: sliced Wasserstein distance on Laplacian-pyramid patches (x1000, mean of
  levels; ``levels`` holds each); ``fid`` / ``kid``: Frechet / kernel distance in the
  features of a small CNN trained on the user's images (``features`` says how it
  learnt). Lower is closer. Each has ``reference``: the same distance from
  held-out real images to the training images, i.e. what genuinely new real
  photos score (null without held-out images).
- ``usefulness``: ``real`` / ``synthetic`` / ``mixed`` / ``oracle`` balanced
  accuracy on held-out real images and ``gqi`` (each with ``std`` and ``per_seed``),
  measured with the images that survive the filter; see :mod:`usefulness`.
- ``delivered``: what the filter keeps: ``count``, ``diversity``, ``copy_share`` (0 unless
  the filter's copy check was off, since it uses the same threshold).
- ``filter``: thresholds, images checked, and drops per reason.
- ``worst_copies``: the closest (generated, training) pairs, closest first, as
  ``{"generated": i, "train": j, "distance": d, "is_copy": bool}``; ``i`` and
  ``j`` index the ``generated`` and ``train`` tensors passed in.
- ``thresholds``: the alarm levels the verdict used; ``counts``: images used.
"""
from __future__ import annotations

import torch

from . import filtering, metrics
from .usefulness import ClassifierSettings, metric, split, usefulness_test

VERDICTS = ("varied and new", "repeats itself", "copies your photos", "mostly noise")

NOISE_ALARM = 0.5  # at least this share of images noise or blank -> "mostly noise"
COPY_ALARM = 0.10  # at least this share near-copies -> "copies your photos"
DIVERSITY_ALARM = 0.7  # variety below this share of the real images' -> "repeats itself"


def verdict(*, noise_share: float, copy_share: float, diversity: float | None) -> tuple[str, str]:
    """(verdict, one-sentence explanation) from the three alarm numbers, worst problem first."""
    if noise_share >= NOISE_ALARM:
        return "mostly noise", (
            f"{noise_share:.0%} of the generated images are noise or blank instead of pictures; "
            "the generator has not learnt your images yet (train longer or with more images)."
        )
    if copy_share >= COPY_ALARM:
        return "copies your photos", (
            f"{copy_share:.0%} of the generated images are near-copies of your own photos, "
            "so the generator memorised them instead of making new ones."
        )
    if diversity is not None and diversity < DIVERSITY_ALARM:
        return "repeats itself", (
            f"The generated images are only {diversity:.0%} as varied as your photos: "
            "the generator keeps making nearly the same picture."
        )
    shown = f" ({diversity:.0%} of your photos' variety)" if diversity is not None else ""
    return "varied and new", (
        f"The generated images are varied{shown} and new: only {copy_share:.0%} are near-copies of your photos."
    )


def _round(x: float) -> float:
    return round(float(x), 6)


def _distance_metrics(generated, train, heldout, negatives_train, seed, settings) -> dict:
    """swd, fid and kid of generated vs training images, with the held-out reference when possible."""
    out = {}
    swd = metrics.sliced_wasserstein(train, generated, seed=seed)
    ref = _round(metrics.sliced_wasserstein(train, heldout, seed=seed)["mean"]) if heldout is not None else None
    out["swd"] = metric(swd["mean"], levels=swd["levels"], reference=ref)
    if len(generated) < 2 or len(train) < 2:
        reason = "needs at least two generated and two real images"
        return out | {"fid": metric(None, reason), "kid": metric(None, reason)}
    net = metrics.train_feature_net(train, negatives_train, seed=seed, settings=settings)
    f_train, f_gen = net(train), net(generated)
    f_held = net(heldout) if heldout is not None else None
    out["fid"] = metric(metrics.frechet_distance(f_train, f_gen), features=net.task,
                        reference=_round(metrics.frechet_distance(f_train, f_held)) if f_held is not None else None)
    out["kid"] = metric(metrics.kernel_distance(f_train, f_gen, seed=seed), features=net.task,
                        reference=_round(metrics.kernel_distance(f_train, f_held, seed=seed)) if f_held is not None else None)
    return out


def quality_report(
    *,
    generated: torch.Tensor,
    train: torch.Tensor,
    heldout: torch.Tensor | None = None,
    negatives: list[torch.Tensor] | None = None,
    negatives_heldout: list[torch.Tensor] | None = None,
    extra_real: torch.Tensor | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    settings: ClassifierSettings | None = None,
    measure_usefulness: bool = True,
    worst: int = 8,
) -> dict:
    """Measure ``generated`` against the real images and return the report (module docstring).

    All images are uint8 [N,C,H,W] of one shape. ``train``: the images the
    generator learnt. ``heldout``: real images of the class it never saw
    (calibrates the copy check, and is the usefulness test set; without it
    usefulness is null). ``negatives``: one tensor per other class; unless
    ``negatives_heldout`` is given each is split 70/30 into train/test.
    ``extra_real``: more real images of the class, for the oracle.
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

    reference = filtering.build_reference(train, heldout)
    checked = filtering.score_images(generated, reference, drop_copies=True)
    copies = metrics.copy_detection(generated, train, threshold=reference.copy_threshold, worst=worst)
    noise_share = (checked.dropped["noise"] + checked.dropped["blank"]) / len(generated)
    diversity = metrics.diversity_ratio(generated, train) if len(generated) >= 2 else None
    kept = generated[checked.keep]

    report: dict = {}
    name, explanation = verdict(noise_share=noise_share, copy_share=copies["share"], diversity=diversity)
    report["verdict"] = name
    report["explanation"] = explanation
    report["diversity"] = metric(diversity, "needs at least two generated images")
    report["copy_share"] = metric(copies["share"], threshold=round(copies["threshold"], 6))
    report["noise_share"] = metric(noise_share)
    report |= _distance_metrics(generated, train, heldout, negatives, seeds[0], settings)

    if not measure_usefulness:
        reason = "the usefulness test was turned off"
        report["usefulness"] = {k: metric(None, reason) for k in ("real", "synthetic", "mixed", "oracle", "gqi")}
    elif heldout is None:
        reason = "no held-out real images of this class to test on"
        report["usefulness"] = {k: metric(None, reason) for k in ("real", "synthetic", "mixed", "oracle", "gqi")}
    else:
        report["usefulness"] = usefulness_test(
            real_train=train, real_test=heldout, synthetic=kept, negatives_train=negatives,
            negatives_test=negatives_heldout, extra_real=extra_real, seeds=seeds, settings=settings,
        )

    report["delivered"] = {
        "count": len(kept),
        "diversity": metric(metrics.diversity_ratio(kept, train) if len(kept) >= 2 else None,
                            "fewer than two images pass the filter"),
        "copy_share": metric(
            metrics.copy_detection(kept, train, threshold=reference.copy_threshold, worst=0)["share"]
            if len(kept) else None, "no image passes the filter"),
    }
    report["filter"] = {"checked": len(generated), "kept": len(kept), "dropped": checked.dropped,
                        "thresholds": reference.thresholds()}
    report["worst_copies"] = [
        {**pair, "is_copy": bool(copies["is_copy"][pair["generated"]])} for pair in copies["worst"]
    ]
    report["thresholds"] = {"noise_alarm": NOISE_ALARM, "copy_alarm": COPY_ALARM, "diversity_alarm": DIVERSITY_ALARM}
    report["counts"] = {"generated": len(generated), "train": len(train),
                        "heldout": 0 if heldout is None else len(heldout),
                        "negative_classes": len(negatives), "seeds": list(seeds)}
    return report
