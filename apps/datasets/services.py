"""Creating datasets from uploads (files and/or a zip), adding to them, deleting them.

Each file is decoded and checked (apps/datasets/imaging.py) on a small pool of threads, one per CPU
core (``SYNTHGEN_INGEST_THREADS``), a few files ahead of the one being stored, so that a bulk upload of
phone photos uses every core while at most a few images are decoded at once; the files are then stored
and recorded one by one, in the order they came, on the request's own thread (its database
transaction). A bad file is rejected with a reason and the rest of the upload still succeeds. Nothing half-written stays
behind: files written for a request that fails as a whole are removed again. When the storage
cannot be written, the request fails as a whole with StorageUnavailable (the API answers 503).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from apps.core.errors import InvalidInput
from apps.core.storage import StorageUnavailable

from . import archive as zip_archive
from . import imaging
from . import labels as class_labels
from .models import Dataset, DatasetImage

# Stored originals are named by the server (a random name, see models._original_path) with the
# extension of the format the content really has, never the one the uploader chose.
STORED_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}
log = logging.getLogger(__name__)


@dataclass
class Rejected:
    file: str
    reason: str


def image_limits() -> imaging.ImageLimits:
    return imaging.ImageLimits(
        max_file_bytes=settings.SYNTHGEN_MAX_FILE_BYTES, max_pixels=settings.SYNTHGEN_MAX_IMAGE_PIXELS
    )


def zip_limits() -> zip_archive.ArchiveLimits:
    return zip_archive.ArchiveLimits(
        max_members=settings.SYNTHGEN_MAX_ZIP_MEMBERS,
        max_total_bytes=settings.SYNTHGEN_MAX_ZIP_TOTAL_BYTES,
        max_member_bytes=settings.SYNTHGEN_MAX_FILE_BYTES,
    )


def create_dataset(
    *, owner, name: str, files: Iterable = (), archive=None, labelled: bool = False, labels: list[str] | None = None
) -> tuple[Dataset, list[dict]]:
    """Create a dataset from uploaded image files and/or one zip. Returns (dataset, rejected).

    ``labelled``: every image has a class - a zip's class is its top folder (an ImageFolder), a file's
    class is its entry in ``labels`` (one per file, in order). Classes with fewer than
    :data:`~.labels.MIN_CLASS_IMAGES` images are left out (and reported); at least
    :data:`~.labels.MIN_CLASSES` classes must remain."""
    files = list(files)
    if not (name or "").strip():
        raise InvalidInput({"name": "Give the dataset a name, e.g. 'red tulips'."})
    if not files and archive is None:
        raise InvalidInput({"images": "Choose image files (PNG, JPEG or WebP) or a zip of them to upload."})
    _check_file_count(files)
    file_labels = _file_labels(files, labels, labelled)
    written: list[str] = []
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(owner=owner, name=name.strip()[:120], labelled=labelled)
            rejected = _ingest_or_refuse(dataset, files, archive, written, file_labels)
            if labelled:
                rejected += _drop_small_classes(dataset)
            if not dataset.images.exists():
                reasons = "; ".join(f"{r['file']}: {r['reason']}" for r in rejected[:5])
                raise InvalidInput({"images": f"No usable image in this upload. {reasons}"})
            if labelled and len(dataset.class_counts()) < class_labels.MIN_CLASSES:
                raise InvalidInput(
                    {
                        "archive": (
                            f"A labelled dataset needs at least {class_labels.MIN_CLASSES} classes with "
                            f"{class_labels.MIN_CLASS_IMAGES} or more images each; this upload has "
                            f"{_classes_in_words(dataset.class_counts())}. Put each class's images in a folder named "
                            "after it, or upload without labelled=true for one class."
                        )
                    }
                )
    except BaseException:
        _delete_files(written)
        raise
    return dataset, rejected


def add_images(*, dataset: Dataset, files: Iterable = (), archive=None, labels: list[str] | None = None) -> list[dict]:
    """Add uploads to an existing dataset; returns the rejected files with reasons (a labelled dataset
    takes labelled uploads, as :func:`create_dataset`)."""
    files = list(files)
    _check_file_count(files)
    file_labels = _file_labels(files, labels, dataset.labelled)
    written: list[str] = []
    try:
        with transaction.atomic():
            return _ingest_or_refuse(dataset, files, archive, written, file_labels)
    except BaseException:
        _delete_files(written)
        raise


def _file_labels(files: list, labels: list[str] | None, labelled: bool) -> list[str] | None:
    """The class of each uploaded file (None for an unlabelled upload); refuses a count that does not match."""
    if not labelled:
        if labels:
            raise InvalidInput({"labels": "Labels are only for a labelled dataset: send labelled=true as well."})
        return None
    labels = [class_labels.clean(label) for label in (labels or [])]
    if files and len(labels) != len(files):
        raise InvalidInput(
            {
                "labels": f"{len(files)} images came with {len(labels)} labels: send one `labels` "
                "entry per image, in the same order (or a zip with a folder per class)."
            }
        )
    for label in labels:
        if problem := class_labels.name_problem(label):
            raise InvalidInput({"labels": f"'{label}': {problem}"})
    return labels


def _drop_small_classes(dataset: Dataset) -> list[dict]:
    """Leave out the classes with too few images to learn from; their files go with them."""
    small = [name for name, n in dataset.class_counts().items() if n < class_labels.MIN_CLASS_IMAGES]
    if not small:
        return []
    doomed = dataset.images.filter(label__in=small)
    paths = [p for pair in doomed.values_list("original", "working") for p in pair]
    doomed.delete()
    transaction.on_commit(lambda: _delete_files(paths))
    return [
        asdict(
            Rejected(
                f"{name}/",
                f"class '{name}' has fewer than {class_labels.MIN_CLASS_IMAGES} images - "
                "add more of it, or leave its folder out",
            )
        )
        for name in small
    ]


def _classes_in_words(counts: dict[str, int]) -> str:
    if not counts:
        return "no class"
    return ", ".join(f"'{name}' ({n} images)" for name, n in counts.items())


def _check_file_count(files: list) -> None:
    cap = settings.SYNTHGEN_MAX_FILES_PER_REQUEST
    if len(files) > cap:
        raise InvalidInput(
            {"images": f"{len(files)} files in one upload is over the limit of {cap}; upload in parts or as a zip."}
        )


def _ingest(
    dataset: Dataset, files: list, archive, written: list[str], file_labels: list[str] | None = None
) -> list[dict]:
    rejected: list[Rejected] = []
    known = set(dataset.images.values_list("sha256", flat=True))
    limits = image_limits()
    items = _uploaded_items(files, archive, file_labels, dataset.labelled)
    for name, label, checked in _checked_in_order(items, limits):
        _add_one(dataset, name, checked, known, rejected, written, label)
    return [asdict(r) for r in rejected]


@dataclass(frozen=True)
class _Refused:
    """An upload refused before decoding (a zip member the reader refused, a bad class folder)."""

    reason: str


@dataclass
class _Checked:
    """One upload after the pool's work: its bytes, their digest, and the decoded image or the reason it was refused."""

    raw: bytes
    digest: str
    decoded: imaging.DecodedImage | None
    working_png: bytes | None
    rejected: str | None


def _check(raw: bytes, name: str, limits: imaging.ImageLimits) -> _Checked:
    """Runs on a pool thread: hash, decode, check, normalise and PNG-encode one upload (no database, no storage)."""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        decoded = imaging.decode_image(raw, name, limits)
    except imaging.ImageRejected as exc:
        return _Checked(raw, digest, None, None, exc.reason)
    return _Checked(raw, digest, decoded, imaging.png_bytes(decoded.image), None)


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def ingest_threads() -> int:
    """Threads that decode uploads: SYNTHGEN_INGEST_THREADS, else the CPU cores this process may use (at most 8)."""
    configured = getattr(settings, "SYNTHGEN_INGEST_THREADS", 0)
    if configured:
        return max(1, int(configured))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _decode_pool() -> ThreadPoolExecutor:
    """One pool per process, shared by concurrent requests: at most ``ingest_threads()`` images decode at once."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=ingest_threads(), thread_name_prefix="ingest")
        return _pool


def _checked_in_order(
    items: Iterable[tuple[str, bytes | BinaryIO, str]], limits: imaging.ImageLimits
) -> Iterator[tuple[str, str, _Checked]]:
    """(name, label, checked) of every upload, in order, decoded on the pool a few files ahead.

    The files are read here, on the caller's thread (an archive's members come from one zip handle);
    at most ``2 x threads`` of them are held, read or decoded, at any time, so memory stays bounded
    whatever the upload's size."""
    threads = ingest_threads()
    if threads == 1:
        for name, data, label in items:
            yield (
                name,
                label,
                _refused(data) if isinstance(data, _Refused) else _check(_raw_bytes(data, limits), name, limits),
            )
        return
    pool, ahead = _decode_pool(), 2 * threads
    pending: deque[tuple[str, str, Future]] = deque()
    try:
        for name, data, label in items:
            if isinstance(data, _Refused):
                future: Future = Future()
                future.set_result(_refused(data))
            else:
                future = pool.submit(_check, _raw_bytes(data, limits), name, limits)
            pending.append((name, label, future))
            if len(pending) >= ahead:
                name, label, future = pending.popleft()
                yield name, label, future.result()
        while pending:
            name, label, future = pending.popleft()
            yield name, label, future.result()
    finally:  # the request failed part-way: drop what is still queued (a running decode just finishes)
        for _, _, future in pending:
            future.cancel()


def _refused(refused: _Refused) -> _Checked:
    return _Checked(b"", "", None, None, refused.reason)


def _raw_bytes(data: bytes | BinaryIO, limits: imaging.ImageLimits) -> bytes:
    return data if isinstance(data, bytes) else data.read(limits.max_file_bytes + 1)


def _ingest_or_refuse(
    dataset: Dataset, files: list, archive, written: list[str], file_labels: list[str] | None = None
) -> list[dict]:
    try:
        return _ingest(dataset, files, archive, written, file_labels)
    except StorageUnavailable as exc:
        raise StorageUnavailable(
            f"The images could not be stored, so nothing of this upload was kept. {exc} Try again in a few minutes."
        ) from exc


def _delete_files(paths: list[str]) -> None:
    """Best effort: a storage that is down may keep some of them (no database row names them)."""
    for path in paths:
        try:
            default_storage.delete(path)
        except StorageUnavailable:
            log.warning("could not remove %s from storage after a failed upload", path)


def _uploaded_items(
    files: list, archive, file_labels: list[str] | None, labelled: bool
) -> Iterator[tuple[str, bytes | BinaryIO | _Refused, str]]:
    """(name, bytes or file, class) of every upload; a labelled zip's members outside a usable class folder
    and the members the zip reader refused come as (name, _Refused(reason), ""), in their place."""
    for index, upload in enumerate(files):
        yield upload.name, upload, file_labels[index] if file_labels else ""
    if archive is None:
        return
    try:
        members = zip_archive.iter_zip_images(archive, zip_limits())
        root = class_labels.common_root([info.filename for info in members.members]) if labelled else None
        for name, data in members:
            label = class_labels.class_of(name, root) if labelled else ""
            if labelled and (problem := class_labels.name_problem(label)):
                yield name, _Refused(problem), ""
                continue
            yield name, data, label
    except zip_archive.ArchiveRejected as exc:
        # The whole request fails: nothing from it is kept.
        raise InvalidInput({"archive": f"{getattr(archive, 'name', 'archive')}: {exc.reason}"}) from None
    for refused in members.rejected:
        yield refused.name, _Refused(refused.reason), ""


def _add_one(
    dataset, name, checked: _Checked, known: set[str], rejected: list[Rejected], written: list[str], label: str = ""
) -> None:
    """Store one checked upload (original and working PNG) and record it; or say why it was left out."""
    if checked.rejected is not None:
        rejected.append(Rejected(name, checked.rejected))
        return
    raw, digest, decoded = checked.raw, checked.digest, checked.decoded
    if digest in known:
        rejected.append(Rejected(name, "duplicate: the same image is already in this dataset"))
        return
    known.add(digest)
    image = DatasetImage(
        dataset=dataset,
        original_name=name[:255],
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        format=decoded.format,
        size_bytes=decoded.size_bytes,
        sha256=digest,
        label=label,
    )
    image.original.save(f"original.{STORED_EXTENSIONS[decoded.format]}", ContentFile(raw), save=False)
    written.append(image.original.name)
    image.working.save("working.png", ContentFile(checked.working_png), save=False)
    written.append(image.working.name)
    image.save()


def folder_classes(dataset: Dataset) -> dict[str, int]:
    """The classes the folders of the dataset's uploaded zip(s) propose, with their image counts, read from the
    stored images' paths in the zip (``original_name``); ``{}`` when its images do not all sit in two or more
    class folders (:func:`~.labels.folder_classes`)."""
    return class_labels.folder_classes(list(dataset.images.values_list("original_name", flat=True)))


def _folders_in_words(counts: dict[str, int]) -> str:
    names = list(counts)
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    return f"{len(names)} class folders ({shown})"


def class_folder_warnings(dataset: Dataset) -> list[str]:
    """For an upload that did not say whether it is labelled: a warning when it was taken as one class although
    its zip has a folder per class."""
    counts = {} if dataset.labelled else folder_classes(dataset)
    if not counts:
        return []
    return [
        f"the zip has {_folders_in_words(counts)} but labelled was not set: the images were taken as one "
        "class; send labelled=true to keep the classes"
    ]


def labelling_question(dataset: Dataset) -> str | None:
    """What to ask before training when nobody has said how to read this dataset: its zip has a folder per
    class but it is one class now (None when there is nothing to ask)."""
    if dataset.labelled or dataset.generators.exists():  # trained on already: that was answered
        return None
    counts = folder_classes(dataset)
    if not counts:
        return None
    listed = ", ".join(f"{name} ({n})" for name, n in counts.items())
    return (
        f"The zip has {len(counts)} class folders: {listed}. Choose whether they are classes (a folder per "
        "class) or one class, then start training."
    )


def relabel_dataset(*, dataset: Dataset, labelled: bool) -> list[dict]:
    """Read a dataset's images again as one class (``labelled=False``) or as a folder per class, from the path
    each image had in its zip (``original_name``), exactly as an upload with that choice would have. Returns
    the images left out (classes under :data:`~.labels.MIN_CLASS_IMAGES` images, as an upload leaves them out).

    Refused (nothing changes) for a dataset a generator was trained on, for images outside a class folder, and
    when fewer than :data:`~.labels.MIN_CLASSES` classes would remain."""
    if labelled == dataset.labelled:
        return []
    if dataset.generators.exists():
        raise InvalidInput(
            {
                "labelled": "A generator was already trained on this dataset as it is; upload the "
                "images again as a new dataset to read them the other way."
            }
        )
    before = dataset.labelled
    try:
        with transaction.atomic():
            images = list(dataset.images.select_for_update().only("id", "original_name", "label"))
            _set_labels(images, labelled)
            DatasetImage.objects.bulk_update(images, ["label"])
            dataset.labelled = labelled
            dataset.save(update_fields=["labelled"])
            if not labelled:
                return []
            rejected = _drop_small_classes(dataset)
            if len(dataset.class_counts()) < class_labels.MIN_CLASSES:
                raise InvalidInput(
                    {
                        "labelled": (
                            f"A labelled dataset needs at least {class_labels.MIN_CLASSES} classes with "
                            f"{class_labels.MIN_CLASS_IMAGES} or more images each; these folders give "
                            f"{_classes_in_words(dataset.class_counts())}."
                        )
                    }
                )
            return rejected
    except BaseException:
        dataset.labelled = before
        raise


def _set_labels(images: list[DatasetImage], labelled: bool) -> None:
    """Each image's class from its path in the zip (a folder per class), or none; refuses images outside a folder."""
    if not labelled:
        for image in images:
            image.label = ""
        return
    root = class_labels.common_root([image.original_name for image in images])
    outside = []
    for image in images:
        label = class_labels.class_of(image.original_name, root)
        if class_labels.name_problem(label):
            outside.append(image.original_name)
        image.label = label or ""
    if outside:
        examples = ", ".join(outside[:3]) + (", ..." if len(outside) > 3 else "")
        raise InvalidInput(
            {
                "labelled": (
                    f"{len(outside)} of {len(images)} images are not in a usable class folder (e.g. {examples}), "
                    "so this dataset cannot be read as a folder per class: upload a zip with a folder per class."
                )
            }
        )


def delete_dataset(*, dataset: Dataset) -> None:
    """Delete a dataset, its images and their files. Generators trained on it stay in the registry."""
    paths = [p for pair in dataset.images.values_list("original", "working") for p in pair]
    dataset.delete()
    for path in paths:
        default_storage.delete(path)
