"""What the generator and run pages show, in plain words: stage names and the quality report.

The quality report (``Generator.quality``, written by ``ml.quality.quality_report``) is a nested
dict of ``{"value": x, "reason": why-not, "reference": y, ...}`` numbers; ``quality_summary`` turns
it into a verdict and table rows, and copes with any key being absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.ml.quality.report import POSITIVE_VERDICT  # the one verdict shown in green

# What each pipeline stage means to the person waiting (the run page shows these).
STAGE_LABELS = {
    "queued": "Waiting for a free worker",
    "prepare": "Resizing your images",
    "augment": "Making augmented copies",
    "train": "Training",
    "evaluate": "Measuring the quality of the results",
    "register": "Saving the generator",
    "cleanup": "Tidying up",
    "done": "Finished",
}


def stage_label(status: str, stage: str) -> str:
    """What the run is doing, for people; a run that stopped says so instead of naming its last stage."""
    label = STAGE_LABELS.get(stage, stage)
    if status == "cancelled":
        return "Cancelled"
    if status == "failed":
        return f"Failed while {label[0].lower()}{label[1:]}" if stage in STAGE_LABELS else "Failed"
    return label


@dataclass
class QualityRow:
    """One measured number: what it is, its value as text, what real photos score, and how to read it."""

    label: str
    value: str
    reference: str
    meaning: str


# (key in the report, label, format, how to read it)
_MEASURES = (
    (
        "precision",
        "Realism (precision)",
        "percent",
        "Share of generated images that fall among real photos of this thing; higher is better.",
    ),
    (
        "coverage",
        "Coverage",
        "percent",
        "Share of the real photos' variety the generated images reach; higher is better.",
    ),
    ("recall", "Recall", "percent", "Share of real photos the generated images come close to; higher is better."),
    ("density", "Density", "ratio", "About 1.00 for real photos; far below means unrealistic images."),
    (
        "diversity",
        "Pixel variety",
        "ratio",
        "Pixel differences between generated images relative to your photos' (1.00 = as varied); "
        "it cannot see left-out kinds of images (coverage can), and noise scores high.",
    ),
    (
        "copy_share",
        "Near-copies of your photos",
        "percent",
        "Counting mirror images, augmented copies and small shifts; lower is better: near-copies add nothing new.",
    ),
    (
        "memorisation",
        "Data-copying test (z)",
        "number",
        "About 0: as far from your photos as new photos are; strongly negative: memorised.",
    ),
    ("noise_share", "Noise or blank", "percent", "Lower is better."),
    ("fid", "FID", "number", "Distance to your photos in image features; lower is closer."),
    ("kid", "KID", "number", "Like FID, unbiased for small sets; lower is closer."),
    ("swd", "SWD", "number", "Distance of local textures and colours; lower is closer."),
)
_USEFULNESS = (
    ("real", "Classifier trained on your photos", "percent"),
    ("real_aug", "…on your photos with plain augmentation", "percent"),
    ("mixed_aug", "…on your photos plus generated images, same augmentation", "percent"),
    ("credit", "Gain from the generated images beyond augmentation", "points"),
    ("synthetic", "…on generated images only", "percent"),
    ("mixed", "…on your photos plus generated images", "percent"),
    ("gqi", "Generated-image quality index (0 = chance, 100 = as good as your photos)", "number"),
)


def _text(number: dict | float | None, fmt: str) -> str:
    value = number.get("value") if isinstance(number, dict) else number
    if value is None:
        reason = number.get("reason") if isinstance(number, dict) else None
        return f"not measured ({reason})" if reason else "not measured"
    if fmt == "percent":
        return f"{value:.0%}"
    if fmt == "ratio":
        return f"{value:.2f}"
    if fmt == "points":
        interval = ""
        if isinstance(number, dict) and number.get("low") is not None:
            interval = f" (95 % interval {number['low'] * 100:+.1f} to {number['high'] * 100:+.1f})"
        return f"{value * 100:+.1f} points{interval}"
    return f"{value:.3g}"


def _reference(number, fmt: str) -> str:
    reference = number.get("reference") if isinstance(number, dict) else None
    return "" if reference is None else _text(reference, fmt)


def credit_text(credit: dict) -> str:
    """A credit in accuracy points with its interval, e.g. '+0.4 points (95 % interval -1.0 to +2.0)'."""
    return _text(credit, "points")


def usefulness_text(usefulness: dict) -> str:
    """One plain sentence on whether the generated images help a classifier, read from the credit's interval."""
    credit = usefulness.get("credit") if isinstance(usefulness, dict) else None
    if not isinstance(credit, dict):
        return ""
    if credit.get("value") is None:
        return f"Usefulness was not measured: {credit.get('reason') or 'no reason recorded'}."
    words = {
        "gain": "The generated images add accuracy beyond augmentation",
        "none": "The generated images give no measurable gain beyond augmentation",
        "loss": "The generated images hurt",
    }.get(credit.get("verdict"), "")
    if not words:
        return ""
    unscored = [name for name in usefulness.get("unscored") or [] if isinstance(name, str)]
    left_out = (
        f" Not scored: {', '.join(unscored)} (no unseen photos were kept back of "
        f"{'it' if len(unscored) == 1 else 'them'}); nothing is claimed for "
        f"{'it' if len(unscored) == 1 else 'them'}."
        if unscored
        else ""
    )
    return (
        f"{words}: a classifier trained on your photos plus them, against one trained on your photos with the "
        f"same plain augmentation, scored {credit['value'] * 100:+.1f} points on photos it never saw "
        f"(95 % interval {credit['low'] * 100:+.1f} to {credit['high'] * 100:+.1f}).{left_out}"
    )


def photo_equivalent_text(usefulness: dict | None) -> str:
    """The balance test's photo equivalent as a sentence, e.g. 'Worth in real photos: the generated images are
    worth about 40 more real photos of the short classes (95 % interval 10–70).' ("" when there is none)."""
    equivalent = usefulness.get("photo_equivalent") if isinstance(usefulness, dict) else None
    if not isinstance(equivalent, dict) or not equivalent.get("words"):
        return ""
    return f"Worth in real photos: {equivalent['words'].rstrip('.')}."


def registry_columns(quality: dict | None) -> dict[str, str]:
    """The admin list's columns of a report: its verdict, the gain beyond augmentation, the worth in real photos
    (a conditional generator's ``dataset_usefulness.photo_equivalent``); "—" where the report has none."""
    quality = quality or {}
    credit = (quality.get("dataset_usefulness") or quality.get("usefulness") or {}).get("credit") or {}
    equivalent = (quality.get("dataset_usefulness") or {}).get("photo_equivalent") or {}
    return {
        "verdict": quality.get("verdict") or "—",
        "usefulness": "—" if credit.get("value") is None else f"{credit.get('words', '')}: {credit_text(credit)}",
        "photo_equivalent": equivalent.get("words") or "—",
    }


def readable_report(quality) -> bool:
    """Whether the pages can show ``quality`` (a report from elsewhere, e.g. an imported generator's): the generator
    page's summary and the admin's columns read it without an error, and its texts are texts."""
    if quality is None:
        return True
    try:
        summary = quality_summary(quality)
        columns = registry_columns(quality)
    except Exception:  # noqa: BLE001 - a report of odd shapes, whatever the error
        return False
    texts = [summary[key] for key in ("verdict", "explanation", "advice")] + list(columns.values())
    return all(isinstance(text, str) for text in texts)


def quality_summary(quality: dict | None) -> dict | None:
    """{"verdict", "positive", "explanation", "advice", "useful", "photo_equivalent", "negatives", "rows",
    "usefulness", "filtered"} for the generator page; None without a report."""
    if not quality:
        return None
    rows = [
        QualityRow(label, _text(quality[key], fmt), _reference(quality[key], fmt), meaning)
        for key, label, fmt, meaning in _MEASURES
        if key in quality
    ]
    # A conditional generator's usefulness is measured on the whole dataset (every class gets generated images).
    usefulness = quality.get("dataset_usefulness") or quality.get("usefulness") or {}
    useful_rows = [
        QualityRow(label, _text(usefulness[key], fmt), "", "")
        for key, label, fmt in _USEFULNESS
        if key in usefulness and isinstance(usefulness[key], dict) and usefulness[key].get("value") is not None
    ]
    negatives = quality.get("negatives") if isinstance(quality.get("negatives"), dict) else {}
    return {
        "verdict": quality.get("verdict", ""),
        "positive": quality.get("verdict") == POSITIVE_VERDICT,
        "explanation": quality.get("explanation", ""),
        "advice": quality.get("advice", ""),
        "useful": (
            (
                "For a classifier of all your classes, with generated images in every class: "
                if "dataset_usefulness" in quality
                else ""
            )
            + usefulness_text(usefulness)
        ),
        "photo_equivalent": photo_equivalent_text(quality.get("dataset_usefulness")),
        "negatives": _negatives_text(negatives),
        "rows": rows,
        "usefulness": useful_rows,
        "filtered": _filter_text(quality.get("filter")),
        # A conditional generator: the report above is its shortest class's; every class's verdict in a line.
        "shown_class": quality.get("class", ""),
        "classes": [
            (name, report.get("verdict", ""), report.get("verdict") == POSITIVE_VERDICT)
            for name, report in (quality.get("classes") or {}).items()
        ],
    }


def _negatives_text(negatives: dict) -> str:
    if not negatives.get("source"):
        return ""
    dropped = negatives.get("dropped_as_duplicates") or 0
    return (
        f"Images of other things for the usefulness test: {negatives['source']} ({negatives.get('images', 0)} "
        f"images in {negatives.get('classes', 0)} sets"
        + (f"; {dropped} left out as duplicates of your own photos" if dropped else "")
        + ")."
    )


_DROP_WORDS = {"noise": "mostly noise", "blank": "blank", "copy": "near-copies of your photos"}


def _filter_text(report_filter: dict | None) -> str:
    """One sentence on what the generation filter kept of the report's images ("" without a filter record)."""
    if not report_filter or "checked" not in report_filter:
        return ""
    drops = [
        f"{n} as {_DROP_WORDS.get(reason, reason)}" for reason, n in (report_filter.get("dropped") or {}).items() if n
    ]
    return f"The filter kept {report_filter.get('kept', 0)} of {report_filter['checked']} generated images" + (
        f"; it left out {', '.join(drops)}." if drops else "."
    )
