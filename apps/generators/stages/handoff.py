"""The files a stage hands to the next: fetched from the run's prefix in storage (runs/<id>/, named in
apps/core/storage.py) into the stage's scratch folder, and published back from it."""

from __future__ import annotations

from pathlib import Path

from apps.core import storage

from ..models import TrainingRun


def fetch_run_files(run: TrainingRun, work: Path, *names: str) -> None:
    """The run's files ``names`` from storage into ``work``."""
    for name in names:
        storage.fetch_file(storage.run_file(run.pk, name), work / name)


def publish_run_files(run: TrainingRun, work: Path, *names: str) -> None:
    """The files ``names`` of ``work`` to the run's prefix in storage."""
    for name in names:
        storage.publish_file(work / name, storage.run_file(run.pk, name))
