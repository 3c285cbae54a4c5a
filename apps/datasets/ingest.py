"""Taking uploads (image files and/or a zip) into a dataset: check each one, store it, record it.

Each file is decoded and checked (apps/datasets/imaging.py) on a small pool of threads, one per CPU
core (``SYNTHGEN_INGEST_THREADS``), a few files ahead of the one being stored, so that a bulk upload of
phone photos uses every core while at most a few images are decoded at once; the files are then stored
and recorded one by one, in the order they came, on the request's own thread (its database
transaction). A bad file is rejected with a reason and the rest of the upload still succeeds. The caller
(services.py) removes the files written for a request that fails as a whole. When the storage cannot be
written, the upload fails as a whole with StorageUnavailable (the API answers 503).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import BinaryIO, TypeAlias

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db.models.fields.files import FieldFile

from apps.core.errors import InvalidInput
from apps.core.storage import StorageUnavailable

from . import archive as zip_archive
from . import imaging
from . import labels as class_labels
from .models import Dataset, DatasetImage

# Stored originals are named by the server (a random name, see models._original_path) with the
# extension of the format the content really has, never the one the uploader chose.
STORED_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}

Upload: TypeAlias = "UploadedFile[bytes]"  # one uploaded file


@dataclass
class Rejected:
    file: str
    reason: str


@dataclass(frozen=True)
class _Refused:
    """An upload refused: before decoding (a zip member the reader refused, a bad class folder) or by the decoder."""

    reason: str


@dataclass(frozen=True)
class _Decoded:
    """One upload after the pool's work: its bytes, their digest, the decoded image and its working PNG."""

    raw: bytes
    digest: str
    decoded: imaging.DecodedImage
    working_png: bytes


_Checked = _Decoded | _Refused


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


def ingest(
    dataset: Dataset,
    files: list[Upload],
    archive: BinaryIO | None,
    written: list[str],
    file_labels: list[str] | None = None,
) -> list[dict[str, str]]:
    """Store and record every usable upload in ``dataset`` (``file_labels``: each file's class, for a labelled
    dataset); returns the rejected ones with reasons. Appends each file it stores to ``written``."""
    try:
        rejected: list[Rejected] = []
        known = set(dataset.images.values_list("sha256", flat=True))
        limits = image_limits()
        items = _uploaded_items(files, archive, file_labels, dataset.labelled)
        for name, label, checked in _checked_in_order(items, limits):
            _add_one(dataset, name, checked, known, rejected, written, label)
        return [asdict(r) for r in rejected]
    except StorageUnavailable as exc:
        raise StorageUnavailable(
            f"The images could not be stored, so nothing of this upload was kept. {exc} Try again in a few minutes."
        ) from exc


def _check(raw: bytes, name: str, limits: imaging.ImageLimits) -> _Checked:
    """Runs on a pool thread: hash, decode, check, normalise and PNG-encode one upload (no database, no storage)."""
    try:
        decoded = imaging.decode_image(raw, name, limits)
    except imaging.ImageRejected as exc:
        return _Refused(exc.reason)
    return _Decoded(raw, hashlib.sha256(raw).hexdigest(), decoded, imaging.png_bytes(decoded.image))


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
    items: Iterable[tuple[str, bytes | Upload | _Refused, str]], limits: imaging.ImageLimits
) -> Iterator[tuple[str, str, _Checked]]:
    """(name, label, checked) of every upload, in order, decoded on the pool a few files ahead.

    The files are read here, on the caller's thread (an archive's members come from one zip handle);
    at most ``2 x threads`` of them are held, read or decoded, at any time, so memory stays bounded
    whatever the upload's size."""
    threads = ingest_threads()
    if threads == 1:
        for name, data, label in items:
            yield name, label, data if isinstance(data, _Refused) else _check(_raw_bytes(data, limits), name, limits)
        return
    pool, ahead = _decode_pool(), 2 * threads
    pending: deque[tuple[str, str, Future[_Checked]]] = deque()
    try:
        for name, data, label in items:
            if isinstance(data, _Refused):
                future: Future[_Checked] = Future()
                future.set_result(data)
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


def _raw_bytes(data: bytes | Upload, limits: imaging.ImageLimits) -> bytes:
    return data if isinstance(data, bytes) else data.read(limits.max_file_bytes + 1)


def _uploaded_items(
    files: list[Upload], archive: BinaryIO | None, file_labels: list[str] | None, labelled: bool
) -> Iterator[tuple[str, bytes | Upload | _Refused, str]]:
    """(name, bytes or file, class) of every upload; a labelled zip's members outside a usable class folder
    and the members the zip reader refused come as (name, _Refused(reason), ""), in their place."""
    for index, upload in enumerate(files):
        yield upload.name or "", upload, file_labels[index] if file_labels else ""
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
            yield name, data, label or ""
    except zip_archive.ArchiveRejected as exc:
        # The whole request fails: nothing from it is kept.
        raise InvalidInput({"archive": f"{getattr(archive, 'name', 'archive')}: {exc.reason}"}) from None
    for refused in members.rejected:
        yield refused.name, _Refused(refused.reason), ""


def _add_one(
    dataset: Dataset,
    name: str,
    checked: _Checked,
    known: set[str],
    rejected: list[Rejected],
    written: list[str],
    label: str = "",
) -> None:
    """Store one checked upload (original and working PNG) and record it; or say why it was left out."""
    if isinstance(checked, _Refused):
        rejected.append(Rejected(name, checked.reason))
        return
    decoded = checked.decoded
    if checked.digest in known:
        rejected.append(Rejected(name, "duplicate: the same image is already in this dataset"))
        return
    known.add(checked.digest)
    image = DatasetImage(
        dataset=dataset,
        original_name=name[:255],
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        format=decoded.format,
        size_bytes=decoded.size_bytes,
        sha256=checked.digest,
        label=label,
    )
    # The names given here only carry the extension: the fields' upload_to functions name the stored files.
    _store(image.original, f"original.{STORED_EXTENSIONS[decoded.format]}", checked.raw, written)
    _store(image.working, "working.png", checked.working_png, written)
    image.save()


def _store(field: FieldFile, name: str, data: bytes, written: list[str]) -> None:
    field.save(name, ContentFile(data), save=False)
    written.append(str(field.name))
