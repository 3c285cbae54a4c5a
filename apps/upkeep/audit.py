"""Where the database and the file storage disagree: rows whose files are gone, and stored files no row names.

Reads only. The database is read first, then the storage is listed (one listing per top folder): a row is
written after its files (an upload saves the file before its row; training publishes a generator's folder
before it is marked ready), so a row read before the listing has its files in the listing unless they are
really gone. Files written after the rows were read can look like orphans; they are young, and the repair
(apps.upkeep.repair) removes only orphans older than a grace period.

Who names what (the layout: apps/core/storage.py):
- ``datasets/<id>/...``: each file is named by the DatasetImage whose ``original`` or ``working`` it is;
- ``generators/<id>/...``: everything is named by the Generator ``<id>``; a ready (or broken) generator needs its
  type's ``weights.safetensors`` and ``config.json`` there;
- ``runs/<id>/...``: named while the TrainingRun ``<id>`` is queued or running (cleanup removes a finished run's
  files); a run that trains past two checkpoint intervals needs its checkpoint there;
- ``jobs/<id>/...``: named by the GenerationJob ``<id>``; a finished job needs its zip and its images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from apps.core import storage
from apps.core.storage import StoredObject
from apps.datasets.models import DatasetImage
from apps.generation.models import GenerationJob
from apps.generators.models import Generator, TrainingRun
from apps.ml.engine.base import CONFIG_FILE, WEIGHTS_FILE

GENERATOR_NEEDS = (WEIGHTS_FILE, CONFIG_FILE)  # what a ready generator cannot generate without


@dataclass
class Missing:
    """One row whose files are gone: ``kind`` is "dataset image", "generator", "job" or "run"."""

    kind: str
    id: int
    label: str  # the row in words, e.g. "generator 5 'sandals'"
    what: list[str]  # what the row calls the lost files: "original", "weights.safetensors", "zip", "checkpoint"
    names: list[str]  # their names in storage


@dataclass
class Findings:
    storage: str
    checked_at: datetime
    missing: list[Missing] = field(default_factory=list)
    orphans: list[StoredObject] = field(default_factory=list)  # stored files that no row names
    # Rows marked missing by an earlier repair whose files are all there again (the repair clears the mark).
    back: list[Missing] = field(default_factory=list)
    rows_checked: int = 0  # rows that name files (images, ready generators, finished jobs)

    @property
    def clean(self) -> bool:
        return not self.missing and not self.orphans

    @property
    def looks_like_another_storage(self) -> bool:
        """Most rows' files are missing: more likely a storage that is not the one the database was written with
        (an unmounted folder, another bucket or prefix) than files lost one by one."""
        return len(self.missing) >= 2 and len(self.missing) * 2 > self.rows_checked

    @property
    def orphan_bytes(self) -> int:
        return sum(orphan.size for orphan in self.orphans)

    def as_json(self) -> dict[str, Any]:
        return {
            "storage": self.storage,
            "checked_at": self.checked_at.isoformat(),
            "clean": self.clean,
            "rows_checked": self.rows_checked,
            "missing": [asdict(row) for row in self.missing],
            "orphans": [
                {
                    "name": o.name,
                    "size": o.size,
                    "modified": o.modified.isoformat(),
                    "age_seconds": round((self.checked_at - o.modified).total_seconds()),
                }
                for o in self.orphans
            ],
            "back": [asdict(row) for row in self.back],
        }


def find() -> Findings:
    """Compare the rows with the stored files. Raises StorageUnavailable when the storage cannot be listed."""
    rows = RowNames.read()
    listed = {top: storage.walk_objects(top) for top in storage.TOP_FOLDERS}
    present = {obj.name for objects in listed.values() for obj in objects}
    findings = Findings(storage=storage.describe(), checked_at=timezone.now(), rows_checked=len(rows.rows))
    for row in rows.rows:
        lost = [(what, name) for what, name in zip(row.what, row.names) if name not in present]
        if lost:
            findings.missing.append(
                Missing(row.kind, row.id, row.label, [what for what, _ in lost], [name for _, name in lost])
            )
        elif row.marked:
            findings.back.append(row)
    findings.missing.extend(_missing_checkpoints(rows.active_runs, present))
    for objects in listed.values():
        findings.orphans.extend(obj for obj in objects if not rows.names(obj.name))
    return findings


@dataclass
class _Expected(Missing):
    marked: bool = False  # an earlier repair marked it as missing files


@dataclass
class RowNames:
    """What the database names, read once."""

    image_files: set[str]
    generators: set[int]
    runs: set[int]
    jobs: set[int]
    rows: list[_Expected]  # each row that names files, with the files it names
    active_runs: list[TrainingRun]

    @classmethod
    def read(cls) -> RowNames:
        rows: list[_Expected] = []
        image_files: set[str] = set()
        images = DatasetImage.objects.values_list("pk", "dataset_id", "original", "working", "missing_files")
        for pk, dataset_id, original, working, marked in images.iterator():
            image_files.update((original, working))
            label = f"image {pk} of dataset {dataset_id}"
            rows.append(
                _Expected("dataset image", pk, label, ["original", "working"], [original, working], bool(marked))
            )
        usable = (Generator.Status.READY, Generator.Status.BROKEN)
        generators = Generator.objects.values_list("pk", "name", "status", "files_dir", "missing_files")
        generator_ids = set()
        for pk, name, status, files_dir, marked in generators:
            generator_ids.add(pk)
            if status in usable and files_dir:
                names = [storage.in_folder(files_dir, need) for need in GENERATOR_NEEDS]
                rows.append(
                    _Expected("generator", pk, f"generator {pk} '{name}'", list(GENERATOR_NEEDS), names, bool(marked))
                )
        jobs = GenerationJob.objects.values_list("pk", "status", "output_dir", "archive", "missing_files")
        job_ids = set()
        for pk, status, output_dir, archive, marked in jobs:
            job_ids.add(pk)
            if status == GenerationJob.Status.DONE and archive:
                manifest = storage.in_folder(output_dir, storage.JOB_MANIFEST) if output_dir else ""
                what, names = ["zip"], [archive]
                if manifest:
                    what, names = ["zip", "images"], [archive, manifest]
                rows.append(_Expected("job", pk, f"generation job {pk}", what, names, bool(marked)))
        active_statuses = [TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        active = list(TrainingRun.objects.filter(status__in=active_statuses).select_related("generator"))
        return cls(image_files, generator_ids, {run.pk for run in active}, job_ids, rows, active)

    def names(self, name: str) -> bool:
        """Whether some row names the stored file ``name``."""
        top, _, rest = name.partition("/")
        if top == "datasets":
            return name in self.image_files
        owner = rest.split("/", 1)[0]
        if not owner.isdigit():
            return False
        ids = {"generators": self.generators, "runs": self.runs, "jobs": self.jobs}.get(top, set())
        return int(owner) in ids


def _missing_checkpoints(active_runs: list[TrainingRun], present: set[str]) -> list[Missing]:
    """Runs that have trained two checkpoint intervals since they (re)started but have no stored checkpoint: a
    worker that stops now would have to start their training over."""
    missing = []
    for run in active_runs:
        every = int(run.generator.config.get("checkpoint_every") or 0) if run.stage == "train" else 0
        if not every or run.step < run.resumed_step + 2 * every:
            continue
        folder = storage.run_file(run.pk, storage.RUN_CHECKPOINTS) + "/"
        if not any(name.startswith(folder) for name in present):
            missing.append(Missing("run", run.pk, f"training run {run.pk}", ["checkpoint"], [folder]))
    return missing
