"""What the generator and run pages show, in plain words: stage names and the quality report.

The quality report (``Generator.quality``, written by ``ml.quality.quality_report``) is a nested
dict of ``{"value": x, "reason": why-not, "reference": y, ...}`` numbers; ``quality_summary`` turns
it into a verdict and table rows, and copes with any key being absent.
"""
from __future__ import annotations

from dataclasses import dataclass

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
    ("diversity", "Variety", "ratio", "Variety of the generated images relative to your photos (1.00 = just as varied)."),
    ("copy_share", "Near-copies of your photos", "percent", "Lower is better: near-copies add nothing new."),
    ("noise_share", "Noise or blank", "percent", "Lower is better."),
    ("fid", "FID", "number", "Distance to your photos in image features; lower is closer."),
    ("kid", "KID", "number", "Like FID, steadier for small sets; lower is closer."),
    ("swd", "SWD", "number", "Distance of local textures and colours; lower is closer."),
)
_USEFULNESS = (
    ("real", "Classifier trained on your photos", "percent"),
    ("synthetic", "…on generated images only", "percent"),
    ("mixed", "…on your photos plus generated images", "percent"),
    ("gqi", "Generated-image quality index", "ratio"),
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
    return f"{value:.3g}"


def _reference(number, fmt: str) -> str:
    reference = number.get("reference") if isinstance(number, dict) else None
    return "" if reference is None else _text(reference, fmt)


def quality_summary(quality: dict | None) -> dict | None:
    """{"verdict", "explanation", "rows", "usefulness", "filtered"} for the generator page; None without a report."""
    if not quality:
        return None
    rows = [
        QualityRow(label, _text(quality[key], fmt), _reference(quality[key], fmt), meaning)
        for key, label, fmt, meaning in _MEASURES
        if key in quality
    ]
    usefulness = quality.get("usefulness") or {}
    useful_rows = [
        QualityRow(label, _text(usefulness[key], fmt), "", "")
        for key, label, fmt in _USEFULNESS
        if key in usefulness and isinstance(usefulness[key], dict) and usefulness[key].get("value") is not None
    ]
    return {
        "verdict": quality.get("verdict", ""),
        "explanation": quality.get("explanation", ""),
        "rows": rows,
        "usefulness": useful_rows,
        "filtered": _filter_text(quality.get("filter")),
    }


_DROP_WORDS = {"noise": "mostly noise", "blank": "blank", "copy": "near-copies of your photos"}


def _filter_text(report_filter: dict | None) -> str:
    """One sentence on what the generation filter kept of the report's images ("" without a filter record)."""
    if not report_filter or "checked" not in report_filter:
        return ""
    drops = [f"{n} as {_DROP_WORDS.get(reason, reason)}" for reason, n in (report_filter.get("dropped") or {}).items() if n]
    return (f"The filter kept {report_filter.get('kept', 0)} of {report_filter['checked']} generated images"
            + (f"; it left out {', '.join(drops)}." if drops else "."))
