"""Datasets: creating them from uploads (files and/or a zip; ingest.py checks and stores each one), adding to
them, reading a zip's folders as classes or not (labelling), deleting them. The views and the API call these.

Nothing half-written stays behind: files written for a request that fails as a whole are removed again. When
the storage cannot be written, the request fails as a whole with StorageUnavailable (the API answers 503).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict
from functools import partial
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import transaction

from apps.core.errors import InvalidInput
from apps.core.storage import StorageUnavailable

from . import labels as class_labels
from .ingest import Rejected, Upload, ingest
from .models import Dataset, DatasetImage

log = logging.getLogger(__name__)


def create_dataset(
    *,
    owner: User,
    name: str,
    files: Iterable[Upload] = (),
    archive: BinaryIO | None = None,
    labelled: bool = False,
    labels: list[str] | None = None,
) -> tuple[Dataset, list[dict[str, str]]]:
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
            rejected = ingest(dataset, files, archive, written, file_labels)
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


def add_images(
    *, dataset: Dataset, files: Iterable[Upload] = (), archive: BinaryIO | None = None, labels: list[str] | None = None
) -> list[dict[str, str]]:
    """Add uploads to an existing dataset; returns the rejected files with reasons (a labelled dataset
    takes labelled uploads, as :func:`create_dataset`)."""
    files = list(files)
    _check_file_count(files)
    file_labels = _file_labels(files, labels, dataset.labelled)
    written: list[str] = []
    try:
        with transaction.atomic():
            return ingest(dataset, files, archive, written, file_labels)
    except BaseException:
        _delete_files(written)
        raise


def _file_labels(files: list[Upload], labels: list[str] | None, labelled: bool) -> list[str] | None:
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


def _drop_small_classes(dataset: Dataset) -> list[dict[str, str]]:
    """Leave out the classes with too few images to learn from; their files go with them."""
    small = [name for name, n in dataset.class_counts().items() if n < class_labels.MIN_CLASS_IMAGES]
    if not small:
        return []
    doomed = dataset.images.filter(label__in=small)
    paths = [p for pair in doomed.values_list("original", "working") for p in pair]
    doomed.delete()
    transaction.on_commit(partial(_delete_files, paths))
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


def _check_file_count(files: list[Upload]) -> None:
    cap = settings.SYNTHGEN_MAX_FILES_PER_REQUEST
    if len(files) > cap:
        raise InvalidInput(
            {"images": f"{len(files)} files in one upload is over the limit of {cap}; upload in parts or as a zip."}
        )


def _delete_files(paths: list[str]) -> None:
    """Best effort: a storage that is down may keep some of them (no database row names them)."""
    for path in paths:
        try:
            default_storage.delete(path)
        except StorageUnavailable:
            log.warning("could not remove %s from storage after a failed upload", path)


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


def relabel_dataset(*, dataset: Dataset, labelled: bool) -> list[dict[str, str]]:
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
