"""The storage check in words, for ``manage.py check_storage`` and the logs."""

from __future__ import annotations

from datetime import timedelta

from .audit import Findings
from .repair import Repairs


def summary(findings: Findings) -> str:
    if findings.clean:
        return f"clean: every row's files are in {findings.storage}, and every file there is named by a row"
    return (
        f"{len(findings.missing)} rows with missing files, {len(findings.orphans)} orphans "
        f"({size_words(findings.orphan_bytes)}) in {findings.storage}"
    )


def report_lines(findings: Findings, repairs: Repairs | None, grace: timedelta) -> list[str]:
    lines = [f"Storage: {findings.storage}"]
    if findings.missing:
        lines.append(f"Rows whose files are missing ({len(findings.missing)}):")
        for row in findings.missing:
            lines.append(f"  {row.label}: {', '.join(row.what)} missing ({', '.join(row.names)})")
    if findings.orphans:
        lines.append(f"Files no row names ({len(findings.orphans)}, {size_words(findings.orphan_bytes)}):")
        for orphan in findings.orphans:
            age = span_words(findings.checked_at - orphan.modified)
            lines.append(f"  {orphan.name}  {size_words(orphan.size)}, written {age} ago")
    for row in findings.back:
        lines.append(f"  {row.label}: its files are back")
    if repairs is not None:
        lines.append(
            f"Repaired: removed {len(repairs.removed)} orphans older than {span_words(grace)}, "
            f"kept {len(repairs.kept)} younger ones; marked {len(repairs.marked)} rows, cleared {len(repairs.cleared)}."
        )
        lines.extend(f"  marked {text}" for text in repairs.marked)
    lines.append(summary(findings).capitalize() + ".")
    if not findings.clean and repairs is None:
        lines.append(
            f"Run it with --repair to remove the orphans older than {span_words(grace)} and mark the "
            "rows whose files are missing."
        )
    return lines


def size_words(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def span_words(span: timedelta) -> str:
    """ "1 day", "2.5 hours", "40 seconds"."""
    seconds = max(0.0, span.total_seconds())
    units = [(unit, scale) for unit, scale in (("day", 86400), ("hour", 3600), ("minute", 60)) if seconds >= scale]
    unit, scale = units[0] if units else ("second", 1)
    text = f"{round(seconds / scale, 1):g}"
    return f"{text} {unit}{'' if text == '1' else 's'}"
