"""What ``check_storage --repair`` changes: it removes old orphans and marks the rows whose files are gone, so
that their pages and the API say what is lost (a generator whose weights are gone is "broken: weights missing").

Each change is checked against the storage once more just before it is made: a file that came back is not
marked missing, and an orphan that some row names by now is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core import storage
from apps.datasets.models import DatasetImage
from apps.generation.models import GenerationJob
from apps.generators.models import Generator, TrainingRun

from .audit import Findings, Missing, RowNames

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(days=1)  # orphans younger than this may be work in flight: never removed


@dataclass
class Repairs:
    removed: list[str] = field(default_factory=list)  # orphans removed
    kept: list[str] = field(default_factory=list)  # orphans younger than the grace period, or named by now
    marked: list[str] = field(default_factory=list)  # rows marked as missing files, in words
    cleared: list[str] = field(default_factory=list)  # rows whose files are back: the mark taken off

    def as_json(self) -> dict[str, Any]:
        return {"removed": self.removed, "kept": self.kept, "marked": self.marked, "cleared": self.cleared}


def repair(findings: Findings, grace: timedelta = DEFAULT_GRACE) -> Repairs:
    done = Repairs()
    cutoff = timezone.now() - grace
    rows = RowNames.read() if findings.orphans else None
    for orphan in findings.orphans:
        if orphan.modified > cutoff or (rows and rows.names(orphan.name)):
            done.kept.append(orphan.name)
            continue
        storage.delete(orphan.name)
        done.removed.append(orphan.name)
    for row in findings.missing:
        lost = [what for what, name in zip(row.what, row.names) if not _there(name)]
        if lost and _mark(row, lost):
            done.marked.append(f"{row.label}: {', '.join(lost)} missing")
    for row in findings.back:
        if all(_there(name) for name in row.names) and _clear(row):
            done.cleared.append(f"{row.label}: files back")
    if done.removed or done.marked or done.cleared:
        log.warning(
            "storage repair: removed %d orphans, marked %s, cleared %s", len(done.removed), done.marked, done.cleared
        )
    return done


def _there(name: str) -> bool:
    if name.endswith("/"):  # a folder: any file in it
        return bool(storage.walk(name.rstrip("/")))
    return storage.exists(name)


def _mark(row: Missing, lost: list[str]) -> bool:
    """Mark the row; False when it is gone (deleted meanwhile) or not in a state that needs its files."""
    if row.kind == "dataset image":
        return DatasetImage.objects.filter(pk=row.id).update(missing_files=lost) > 0
    if row.kind == "generator":
        usable = [Generator.Status.READY, Generator.Status.BROKEN]
        updated = Generator.objects.filter(pk=row.id, status__in=usable).update(
            status=Generator.Status.BROKEN, missing_files=lost
        )
        return updated > 0
    if row.kind == "job":
        return GenerationJob.objects.filter(pk=row.id, status=GenerationJob.Status.DONE).update(missing_files=lost) > 0
    if row.kind == "run":
        return _warn_run(row.id)
    raise ValueError(f"unknown row kind {row.kind!r}")


_RUN_WARNING = (
    "Its checkpoint is missing from storage (found by the storage check): if its worker stops, training starts "
    "again from the beginning."
)


def _warn_run(run_id: int) -> bool:
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or not run.is_active:
            return False
        if _RUN_WARNING not in run.warnings:
            run.warnings = [*run.warnings, _RUN_WARNING]
            run.save(update_fields=["warnings"])
    return True


def _clear(row: Missing) -> bool:
    if row.kind == "dataset image":
        return DatasetImage.objects.filter(pk=row.id).update(missing_files=[]) > 0
    if row.kind == "generator":
        updated = Generator.objects.filter(pk=row.id, status=Generator.Status.BROKEN).update(
            status=Generator.Status.READY, missing_files=[]
        )
        return updated > 0
    if row.kind == "job":
        return GenerationJob.objects.filter(pk=row.id).update(missing_files=[]) > 0
    return False
