"""Every file SynthGen keeps, and the only way in and out of where it is kept.

Files live in Django's default storage, which SYNTHGEN_STORAGE_URL chooses: a local folder
(``file://``, MEDIA_ROOT) or an S3 bucket (``s3://``; apps/core/storage_backends.py). No code works
with MEDIA_ROOT paths: a process on any host reaches the same files by their names, which are:

    datasets/<id>/originals/<random>.<ext>       an uploaded image, as uploaded   (DatasetImage.original)
    datasets/<id>/working/<random>.png           the same image normalised        (DatasetImage.working)
    runs/<id>/...                                a training run's files, handed from stage to stage
    runs/<id>/checkpoints/checkpoint.safetensors the newest training checkpoint (a re-delivered train resumes)
    generators/<id>/...                          a trained generator: weights, config, grids, its real images
    jobs/<id>/images/000001.png ... manifest.json metadata.jsonl, jobs/<id>/<name>-<id>.zip   a generation job's output

The ML code (apps.ml) works on local folders: a stage takes a :func:`scratch` folder, :func:`fetch`\\ es
its inputs into it, runs, and :func:`publish`\\ es what it made. Storage that cannot be reached raises
:class:`StorageUnavailable` (its message names the storage); a name that is not there raises
``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from .storage_backends import StorageUnavailable

__all__ = [
    "StorageUnavailable",
    "dataset_prefix",
    "dataset_original_name",
    "dataset_working_name",
    "run_prefix",
    "run_file",
    "generator_prefix",
    "generator_file",
    "job_prefix",
    "GENERATOR_EXTRAS",
    "GENERATOR_REFERENCE",
    "GENERATOR_HELDOUT",
    "GENERATOR_AUGMENTED",
    "GENERATOR_CLASS_FILTER",
    "JOB_IMAGES",
    "JOB_MANIFEST",
    "JOB_METADATA",
    "JOB_WORK_ZIP",
    "job_file",
    "job_image_name",
    "job_zip_name",
    "job_scratch_tag",
    "generator_scratch_tag",
    "in_folder",
    "describe",
    "check",
    "exists",
    "read_bytes",
    "read_many",
    "write_bytes",
    "open_stream",
    "walk",
    "StoredObject",
    "walk_objects",
    "TOP_FOLDERS",
    "fetch",
    "fetch_file",
    "publish",
    "publish_file",
    "delete",
    "remove_prefix",
    "scratch",
    "remove_stale_scratch",
]

log = logging.getLogger(__name__)
PARALLEL = 8  # files moved at a time (S3 round trips overlap; a local folder does not mind)

# --- the layout ----------------------------------------------------------------------------------

# The folders at the top of the storage that SynthGen writes (and `manage.py check_storage` walks).
TOP_FOLDERS = ("datasets", "runs", "generators", "jobs")


def dataset_prefix(dataset_id: int) -> str:
    return f"datasets/{dataset_id}"


def dataset_original_name(dataset_id: int, extension: str) -> str:
    return f"{dataset_prefix(dataset_id)}/originals/{uuid.uuid4().hex}.{extension}"


def dataset_working_name(dataset_id: int) -> str:
    return f"{dataset_prefix(dataset_id)}/working/{uuid.uuid4().hex}.png"


def run_prefix(run_id: int) -> str:
    """A training run's files: the stages' hand-offs and the newest checkpoint (cleanup removes them)."""
    return f"runs/{run_id}"


def run_file(run_id: int, name: str) -> str:
    return f"{run_prefix(run_id)}/{name}"


# A training run's files (run_file), handed from stage to stage: uint8 [N,C,H,W] tensors of the dataset's training
# part at the model's resolution, of its held-out part (the quality report's real images) and of the training part
# with its augmented copies; the quality report; the closest generated/training pairs side by side; and folders: the
# trained model as its type saved it, the newest checkpoint, a fine-tuning run's copy of its base generator's files.
RUN_PREPARED, RUN_HELDOUT, RUN_TRAINING = "prepared.safetensors", "heldout.safetensors", "training.safetensors"
RUN_QUALITY, RUN_COPIES_GRID = "quality.json", "copies.png"
RUN_FINAL, RUN_CHECKPOINTS, RUN_BASE = "final", "checkpoints", "base"


def generator_prefix(generator_id: int) -> str:
    """A generator's files: what its type saved (weights, config), grids, the real images it learnt from."""
    return f"generators/{generator_id}"


def generator_file(generator_id: int, name: str) -> str:
    return f"{generator_prefix(generator_id)}/{name}"


# The real images a generator learnt from, kept in its folder (uint8 [N,C,H,W] "images", plus "labels" for a
# conditional generator): the training part, the held-out part, the augmented copies; generation calibrates its
# quality filter on them. And the generation's class filter (apps.ml.quality.class_filter), trained on them the
# first time a conditional generator's job needs it.
GENERATOR_REFERENCE = "reference.safetensors"
GENERATOR_HELDOUT = "heldout.safetensors"
GENERATOR_AUGMENTED = "augmented.safetensors"
GENERATOR_CLASS_FILTER = "class_filter.safetensors"
# Its grids: samples of the trained model, the closest generated/training pairs, the newest grid while it trains.
GENERATOR_SAMPLE_GRID, GENERATOR_COPIES_GRID, GENERATOR_PROGRESS_GRID = "samples.png", "copies.png", "progress.png"

# Files in a generator's folder that are not the model its type saved (loading the model skips them).
GENERATOR_EXTRAS = frozenset(
    {
        GENERATOR_REFERENCE,
        GENERATOR_HELDOUT,
        GENERATOR_AUGMENTED,
        GENERATOR_SAMPLE_GRID,
        GENERATOR_COPIES_GRID,
        GENERATOR_PROGRESS_GRID,
        GENERATOR_CLASS_FILTER,
    }
)


def job_prefix(job_id: int) -> str:
    return f"jobs/{job_id}"


# --- a generation job's files (apps.generation) ---------------------------------------------------
# jobs/<id>/images/: the page's images (000001.png ..., a folder per class for a conditional job), manifest.json and
# metadata.jsonl; jobs/<id>/<dataset name>-<id>.zip: every image, with both. A running job makes them in its scratch
# folder (tag job<id>): images/ as stored, zip/ for the zip; it fetches its generator's model into another
# (tag generator<id>).
JOB_IMAGES, JOB_MANIFEST, JOB_METADATA, JOB_WORK_ZIP = "images", "manifest.json", "metadata.jsonl", "zip"


def job_file(job_id: int, name: str) -> str:
    return f"{job_prefix(job_id)}/{name}"


def job_image_name(number: int) -> str:
    return f"{number:06d}.png"


def job_zip_name(dataset_name: str, job_id: int) -> str:
    return f"{dataset_name}-{job_id}.zip"


def job_scratch_tag(job_id: int) -> str:
    return f"job{job_id}"


def generator_scratch_tag(generator_id: int) -> str:
    return f"generator{generator_id}"


def in_folder(folder: str, name: str) -> str:
    """The file ``name`` in the stored folder ``folder`` (e.g. a generator's ``files_dir``)."""
    return f"{folder}/{name}"


# --- one file ------------------------------------------------------------------------------------


def describe() -> str:
    """The storage in words, e.g. "S3 bucket 'synthgen' at http://10.0.0.5:8333"."""
    describe_backend = getattr(default_storage, "describe", None)
    return describe_backend() if describe_backend else type(default_storage._wrapped).__name__


def check() -> None:
    """Raise StorageUnavailable unless the storage answers (the bucket exists, the folder is writable)."""
    checker = getattr(default_storage, "check", None)
    if checker:
        checker()


def exists(name: str) -> bool:
    return bool(name) and default_storage.exists(name)


def read_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as file:
        return file.read()


def read_many(names: Iterable[str]) -> list[bytes]:
    """The contents of many files, in order, read a few at a time."""
    names = list(names)
    if len(names) < 2:
        return [read_bytes(name) for name in names]
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(read_bytes, names))


def write_bytes(name: str, data: bytes) -> str:
    """Store ``data`` under ``name`` (replacing what was there); returns the name."""
    return default_storage.save(name, ContentFile(data))


def open_stream(name: str):
    """(a file-like object to read ``name`` from, its size), for a streamed download."""
    opener = getattr(default_storage, "open_stream", None)
    if opener:
        return opener(name)
    file = default_storage.open(name, "rb")
    return file, file.size


def delete(name: str) -> None:
    if name:
        default_storage.delete(name)


# --- a whole prefix ------------------------------------------------------------------------------


def walk(prefix: str) -> list[str]:
    """Every file name under ``prefix`` (names relative to the storage, not to the prefix), sorted."""
    walker = getattr(default_storage, "walk", None)
    if walker:
        return list(walker(prefix))
    return sorted(_walk_listdir(prefix))


@dataclass(frozen=True)
class StoredObject:
    """One stored file: its name, its size in bytes and when it was last written (UTC)."""

    name: str
    size: int
    modified: datetime


def walk_objects(prefix: str) -> list[StoredObject]:
    """Every file under ``prefix`` with its size and age (one listing on S3), sorted by name."""
    walker = getattr(default_storage, "walk_objects", None)
    if walker:
        return [StoredObject(*entry) for entry in walker(prefix)]
    return [StoredObject(n, default_storage.size(n), default_storage.get_modified_time(n)) for n in walk(prefix)]


def _walk_listdir(prefix: str) -> Iterator[str]:
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return
    for name in files:
        yield f"{prefix}/{name}"
    for folder in folders:
        yield from _walk_listdir(f"{prefix}/{folder}")


def fetch_file(name: str, destination: Path) -> Path:
    """Copy the stored file ``name`` to the local path ``destination``; returns it."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    reader = getattr(default_storage, "read_file", None)
    if reader:
        reader(name, destination)
    else:
        with default_storage.open(name, "rb") as source, open(destination, "wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
    return destination


def fetch(prefix: str, into: Path | None = None, *, skip: Iterable[str] = ()) -> Path:
    """Copy every file under ``prefix`` into the local folder ``into`` (a new temp folder when None),
    keeping the layout below the prefix; ``skip``: file names (last part) left out. Returns the folder.

    A prefix with no files gives an empty folder.
    """
    into = (
        Path(into) if into is not None else Path(tempfile.mkdtemp(prefix=f"fetch-p{os.getpid()}-", dir=_scratch_root()))
    )
    into.mkdir(parents=True, exist_ok=True)
    skip = set(skip)
    base = prefix.rstrip("/") + "/"
    names = [n for n in walk(prefix) if n.startswith(base) and n.rsplit("/", 1)[-1] not in skip]
    _parallel(lambda name: fetch_file(name, into / name[len(base) :]), names)
    return into


def publish_file(local: Path, name: str) -> str:
    """Store the local file ``local`` under ``name`` (replacing what was there); returns the name."""
    writer = getattr(default_storage, "write_file", None)
    if writer:
        writer(Path(local), name)
        return name
    with open(local, "rb") as source:
        return default_storage.save(name, File(source, name=Path(local).name))


def publish(local: Path, prefix: str) -> list[str]:
    """Store every file of the local folder ``local`` (recursively, hidden files left out) under ``prefix``.

    Files already under the prefix that ``local`` does not have stay. Returns the names written.
    """
    local = Path(local)
    files = sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith("."))
    names = [f"{prefix.rstrip('/')}/{p.relative_to(local).as_posix()}" for p in files]
    _parallel(lambda pair: publish_file(*pair), list(zip(files, names)))
    return names


def remove_prefix(prefix: str) -> None:
    """Delete every file under ``prefix``."""
    if not prefix.strip("/"):
        raise ValueError("refusing to remove the whole storage")
    remover = getattr(default_storage, "remove_prefix", None)
    if remover:
        remover(prefix)
    else:
        for name in walk(prefix):
            default_storage.delete(name)


def _parallel(function, items: list) -> None:
    if len(items) < 2:
        for item in items:
            function(item)
        return
    with ThreadPoolExecutor(PARALLEL) as pool:
        for _ in pool.map(function, items):  # re-raises the first error
            pass


# --- local scratch -------------------------------------------------------------------------------


def _scratch_root() -> Path:
    root = Path(settings.SYNTHGEN_WORK_DIR) / "scratch"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def scratch(tag: str) -> Iterator[Path]:
    """A local temp folder under SYNTHGEN_WORK_DIR for one piece of work; removed when the block ends.

    Its name holds this process's id, so that the folders of a process killed mid-work (SIGKILL skips
    ``finally``) can be told apart and removed later (:func:`remove_stale_scratch`)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{tag}-p{os.getpid()}-", dir=_scratch_root()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale_scratch() -> list[str]:
    """Remove the scratch folders of processes of this host that are gone (a worker killed mid-stage);
    returns their names. A worker calls it when it starts."""
    removed = []
    for folder in _scratch_root().iterdir():
        match = _SCRATCH_PID.search(folder.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


_SCRATCH_PID = re.compile(r"-p(\d+)-[^-]+$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
