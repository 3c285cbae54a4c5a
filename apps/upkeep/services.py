"""The storage check: find where the database and the storage disagree (apps.upkeep.audit), repair when asked
(apps.upkeep.repair), and keep what was found (StorageCheck, shown in the admin). Used by
``manage.py check_storage`` and by the beat's daily task."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from apps.core import storage

from . import audit
from .models import StorageCheck
from .repair import DEFAULT_GRACE, Repairs, repair


@dataclass
class Outcome:
    record: StorageCheck
    findings: audit.Findings | None  # None: the storage could not be read (record.error says why)
    repairs: Repairs | None  # None: not asked to repair, or nothing could be read

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "storage": self.record.storage,
            "clean": self.record.clean,
            "error": self.record.error or None,
        }
        if self.findings is not None:
            body.update(self.findings.as_json())
        if self.repairs is not None:
            body["repaired"] = self.repairs.as_json()
        return body


def check_storage(
    *,
    repair_it: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    force: bool = False,
    trigger: str = StorageCheck.Trigger.COMMAND,
) -> Outcome:
    """Run the check (and the repair when ``repair_it``) and record it. A storage that cannot be reached is
    recorded as a check that could not finish, with the storage's own message; nothing is changed then. Nor is
    anything repaired when most rows' files are missing (``Findings.looks_like_another_storage``) unless ``force``:
    the record's ``error`` says why."""
    record = StorageCheck.objects.create(
        started_at=timezone.now(), trigger=trigger, storage=_describe(), repair=repair_it
    )
    refused = ""
    try:
        findings = audit.find()
        if repair_it and findings.looks_like_another_storage and not force:
            refused = _refusal(findings)
        repairs = repair(findings, grace) if repair_it and not refused else None
    except storage.StorageUnavailable as exc:
        record.error = str(exc)
        record.finished_at = timezone.now()
        record.save()
        return Outcome(record, None, None)
    record.finished_at = timezone.now()
    record.error = refused
    record.clean = findings.clean
    record.missing = len(findings.missing)
    record.orphans = len(findings.orphans)
    record.orphan_bytes = findings.orphan_bytes
    record.removed = len(repairs.removed) if repairs else 0
    record.marked = len(repairs.marked) + len(repairs.cleared) if repairs else 0
    outcome = Outcome(record, findings, repairs)
    record.report = outcome.as_json()
    record.save()
    return outcome


def _refusal(findings: audit.Findings) -> str:
    return (
        f"Not repaired: the files of {len(findings.missing)} of the {findings.rows_checked} rows checked are missing "
        f"from {findings.storage}. That looks like another storage than the one the database was written with (a "
        "folder that is not mounted, another bucket or prefix): check SYNTHGEN_STORAGE_URL. If the files really are "
        "lost, run it again with --force."
    )


def _describe() -> str:
    try:
        return storage.describe()
    except Exception:  # the description never stops the check from being recorded
        return "the file storage"
