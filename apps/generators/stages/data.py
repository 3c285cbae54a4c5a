"""The stages that make the training data: prepare (the dataset's images at the model's resolution, split into a
training and a held-out part, and which way the photos face) and augment (the training part with its augmented
copies)."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

from apps.core import storage
from apps.datasets.imaging import dataset_channels, stack_training_tensor
from apps.ml.engine.augment import augment_dataset, augmentation_copies
from apps.ml.engine.checkpoint import load_tensors, save_tensors_atomic
from apps.ml.engine.orientation import measure as measure_orientation
from apps.ml.quality.heldout import split_heldout, split_heldout_by_class

from ..models import Generator, TrainingRun
from ..runs import run_stage
from .handoff import fetch_run_files, publish_run_files


def prepare(run_id: int) -> bool:
    return run_stage(run_id, "prepare", _prepare)


def _prepare(run: TrainingRun, work: Path) -> None:
    generator = run.generator
    if generator.dataset is None:
        raise ValueError("the dataset was deleted before training started; upload it again")
    images = list(generator.dataset.stored_images())
    channels = dataset_channels([image.mode for image in images])
    pictures = []
    for data in storage.read_many(image.working.name for image in images):
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            pictures.append(picture)
    tensor = stack_training_tensor(pictures, generator.resolution, channels)
    classes = []
    if generator.dataset.labelled:  # one model learns every class: the labels travel with the images
        names = sorted({image.label for image in images})
        labels = torch.tensor([names.index(image.label) for image in images])
        train_part, train_labels, heldout, held_labels = split_heldout_by_class(tensor, labels, seed=run.pk)
        save_tensors_atomic({"images": train_part, "labels": train_labels}, work / storage.RUN_PREPARED)
        save_tensors_atomic({"images": heldout, "labels": held_labels}, work / storage.RUN_HELDOUT)
        classes = [{"name": name, "image_count": int((labels == i).sum())} for i, name in enumerate(names)]
    else:
        train_part, heldout = split_heldout(tensor, seed=run.pk)
        train_labels = None
        save_tensors_atomic({"images": train_part}, work / storage.RUN_PREPARED)
        save_tensors_atomic({"images": heldout}, work / storage.RUN_HELDOUT)
    # Which way the training photos face: the augment stage, the recipe and the report follow it.
    found = measure_orientation(train_part, train_labels, [c["name"] for c in classes] or None)
    publish_run_files(run, work, storage.RUN_PREPARED, storage.RUN_HELDOUT)
    Generator.objects.filter(pk=generator.pk).update(channels=channels, classes=classes, orientation=found.as_dict())
    TrainingRun.objects.filter(pk=run.pk).update(image_count=len(train_part))


def augment(run_id: int) -> bool:
    return run_stage(run_id, "augment", _augment)


def _augment(run: TrainingRun, work: Path) -> None:
    fetch_run_files(run, work, storage.RUN_PREPARED)
    prepared = load_tensors(work / storage.RUN_PREPARED)
    images, labels = prepared["images"], prepared.get("labels")
    if run.generator.augment:
        copies = augmentation_copies(len(images))
        found = run.generator.orientation  # mirror images and turns only where the photos show them
        images = augment_dataset(
            images,
            copies=copies,
            seed=run.pk,
            mirror=bool(found.get("mirrors")),
            quarter_turns=bool(found.get("rotations")),
        )
        labels = labels.repeat(1 + copies) if labels is not None else None  # copy k of image i keeps its class
    tensors = {"images": images, **({"labels": labels} if labels is not None else {})}
    save_tensors_atomic(tensors, work / storage.RUN_TRAINING)
    publish_run_files(run, work, storage.RUN_TRAINING)
    TrainingRun.objects.filter(pk=run.pk).update(image_count=len(images))
