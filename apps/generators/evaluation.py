"""The evaluate stage's work: measure a freshly trained generator against real images.

Held-out images of the dataset (never seen in training) calibrate the copy check and are the
test set of the usefulness test; "not this class" images come from the owner's other datasets,
or else from the training sets of shared generators in the registry.
"""
from __future__ import annotations

from pathlib import Path

import torch
from django.conf import settings
from PIL import Image

from apps.core.files import media_path
from apps.datasets.imaging import stack_training_tensor
from apps.datasets.models import Dataset

from .ml import registry
from .ml.checkpoint import load_tensors
from .ml.device import pick_device
from .ml.images import save_grid
from .ml.quality import quality_report
from .ml.usefulness import ClassifierSettings, match_format
from .models import Generator

QUALITY_SEED = 12345
MAX_NEGATIVE_CLASSES = 4
MAX_NEGATIVE_IMAGES = 300


def holdout_count(image_count: int) -> int:
    """Real images kept out of training for the quality report: none below 40 images, else 15% (10-100)."""
    if image_count < 40:
        return 0
    return min(100, max(10, round(image_count * 0.15)))


def split_heldout(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, heldout): a seeded random split of a uint8 [N,C,H,W] tensor."""
    count = holdout_count(len(images))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[count:]], images[order[:count]]


def evaluate(*, generator: Generator, model_dir: Path, train: torch.Tensor, heldout: torch.Tensor | None,
             copies_grid: Path) -> dict:
    """The quality report of the model saved in ``model_dir``; also writes the worst-copies grid."""
    device = pick_device()
    model = registry.get(generator.kind).load(model_dir, device=device)
    generated = model.sample(settings.SYNTHGEN_QUALITY_SAMPLES, seed=QUALITY_SEED)
    negatives = negative_classes(generator, size=train.shape[-1], channels=train.shape[1])
    report = quality_report(
        generated=generated,
        train=train,
        heldout=heldout if heldout is not None and len(heldout) else None,
        negatives=negatives,
        seeds=tuple(settings.SYNTHGEN_QUALITY_SEEDS),
        settings=ClassifierSettings(steps=settings.SYNTHGEN_QUALITY_CLASSIFIER_STEPS, device=device),
    )
    pairs = report.get("worst_copies") or []
    if pairs:
        side_by_side = torch.stack([img for p in pairs for img in (generated[p["generated"]], train[p["train"]])])
        save_grid(side_by_side, copies_grid, columns=2)
    report["negatives_source"] = _negatives_source(generator)
    return report


def _other_datasets(generator: Generator):
    return Dataset.objects.filter(owner=generator.owner_id).exclude(pk=generator.dataset_id).order_by("-created_at")


def _negatives_source(generator: Generator) -> str:
    if _other_datasets(generator).exists():
        return "your other datasets"
    return "images of other generators in the registry"


def negative_classes(generator: Generator, *, size: int, channels: int) -> list[torch.Tensor]:
    """Up to four "not this class" image sets at the generator's size and channels."""
    classes: list[torch.Tensor] = []
    for dataset in _other_datasets(generator)[:MAX_NEGATIVE_CLASSES]:
        pictures = []
        for image in dataset.images.all()[:MAX_NEGATIVE_IMAGES]:
            with Image.open(media_path(image.working.name)) as picture:
                picture.load()
                pictures.append(picture)
        if len(pictures) >= 2:
            classes.append(stack_training_tensor(pictures, size, channels))
    if classes:
        return classes
    others = Generator.objects.filter(status=Generator.Status.READY).exclude(pk=generator.pk)
    others = others.filter(shared=True) | others.filter(owner=generator.owner_id)
    for other in others.order_by("-created_at")[:MAX_NEGATIVE_CLASSES]:
        path = media_path(f"{other.files_dir}/reference.safetensors")
        if other.files_dir and path.exists():
            images = load_tensors(path)["images"][:MAX_NEGATIVE_IMAGES]
            classes.append(match_format(images, channels=channels, size=size))
    return classes
