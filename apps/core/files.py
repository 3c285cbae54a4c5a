"""Paths under MEDIA_ROOT and the work directory, kept in one place."""
from pathlib import Path
import shutil

from django.conf import settings


def media_path(relative: str) -> Path:
    return Path(settings.MEDIA_ROOT) / relative


def run_work_dir(run_id: int) -> Path:
    return Path(settings.SYNTHGEN_WORK_DIR) / "runs" / str(run_id)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
