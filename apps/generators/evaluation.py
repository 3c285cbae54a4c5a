"""The evaluate stage's work: measure a freshly trained generator against real images.

Held-out images of the dataset (never seen in training) calibrate the copy check and are the
test set of the usefulness test; "not this class" images come from the owner's other datasets,
or else from the training sets of shared generators in the registry.

Nothing of the class may leak into its negatives: generators trained on the same dataset are
never used, and any negative image that is a (near-)duplicate of one of the class's photos is
dropped (the same photos uploaded twice under two names). The held-out split keeps each group of
near-duplicate shots on one side.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from django.conf import settings
from PIL import Image
from safetensors.torch import load as load_safetensors

from apps.core import storage
from apps.datasets.imaging import stack_training_tensor
from apps.datasets.models import Dataset
from apps.ml.engine import registry
from apps.ml.engine.device import pick_device
from apps.ml.quality.balance import balance_test
from apps.ml.quality.classifier import ClassifierSettings
from apps.ml.quality.copies import save_copies_grid
from apps.ml.quality.dedupe import drop_matches
from apps.ml.quality.guidance import choose_guidance
from apps.ml.quality.images import match_format
from apps.ml.quality.report import quality_report

from .models import Generator

QUALITY_SEED = 12345
MAX_NEGATIVE_CLASSES = 4
MAX_NEGATIVE_IMAGES = 300
GUIDANCE_SAMPLES = 64  # images per class and candidate scale when the guidance scale is chosen


def classifier_settings(generator: Generator, device) -> ClassifierSettings:
    """The report's classifier: mirror images in its augmentation only for photos that look alike
    mirrored (the prepare stage measured them: ``generator.orientation``)."""
    return ClassifierSettings(
        steps=settings.SYNTHGEN_QUALITY_CLASSIFIER_STEPS,
        device=device,
        mirror=bool(generator.orientation.get("mirrors", False)),
    )


def sampling_steps(kind: str) -> int | None:
    """The steps generation uses by default for this type (None for types without steps)."""
    return registry.get(kind).default_sampling_steps


def evaluate(
    *,
    generator: Generator,
    model_dir: Path,
    train: torch.Tensor,
    heldout: torch.Tensor | None,
    copies_grid: Path,
    augmented: torch.Tensor | None = None,
) -> dict:
    """The quality report of the model saved in ``model_dir``; also writes the worst-copies grid.

    ``augmented``: the augmented training set, when the generator trained on one.
    """
    device = pick_device()
    model = registry.get(generator.kind).load(model_dir, device=device)
    steps = sampling_steps(generator.kind)
    generated = model.sample(settings.SYNTHGEN_QUALITY_SAMPLES, seed=QUALITY_SEED, steps=steps)
    heldout = heldout if heldout is not None and len(heldout) else None
    class_photos = train if heldout is None else torch.cat([train, heldout])
    negatives, source = negative_classes(generator, class_photos)
    report = quality_report(
        generated=generated,
        train=train,
        heldout=heldout,
        augmented=augmented,
        negatives=negatives,
        seeds=tuple(settings.SYNTHGEN_QUALITY_SEEDS),
        settings=classifier_settings(generator, device),
        sampling={"steps": steps, "seed": QUALITY_SEED, "count": len(generated)},
    )
    save_copies_grid(report, generated, train, copies_grid)
    report["negatives"] = source
    return report


def evaluate_by_class(
    *,
    generator: Generator,
    model_dir: Path,
    train: torch.Tensor,
    heldout: torch.Tensor | None,
    copies_grid: Path,
    augmented: torch.Tensor | None = None,
    labels: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
) -> dict:
    """A conditional generator's report: :func:`evaluate`'s report for every class, each class's generated
    images against its own photos, with the dataset's other classes as the "not this class" images.

    The top level is the report of the class with the fewest photos (the one balancing is for), and
    ``classes`` holds every class's report by name; ``dataset_usefulness`` is the balance test
    (:func:`~apps.ml.quality.balance.balance_test`: a classifier of every class, with and without generated
    images in every class). ``labels``: (train, heldout, augmented) labels.
    """
    device = pick_device()
    model = registry.get(generator.kind).load(model_dir, device=device)
    steps = sampling_steps(generator.kind)
    train_labels, held_labels, augmented_labels = labels
    names = [c["name"] for c in generator.classes]
    guidance = chosen_guidance(model, model_dir, train, train_labels, steps, classifier_settings(generator, device))
    reports, generated_by_class = {}, {}
    for index, name in enumerate(names):
        generated = model.sample(
            settings.SYNTHGEN_QUALITY_SAMPLES, seed=QUALITY_SEED + index, steps=steps, labels=index
        )
        generated_by_class[name] = generated
        others = [i for i in range(len(names)) if i != index and (train_labels == i).sum() >= 2]
        held = heldout[held_labels == index] if heldout is not None else None
        report = quality_report(
            generated=generated,
            train=train[train_labels == index],
            heldout=held if held is not None and len(held) else None,
            augmented=augmented[augmented_labels == index] if augmented is not None else None,
            negatives=[train[train_labels == i] for i in others],
            negatives_heldout=[heldout[held_labels == i] for i in others]
            if heldout is not None and all((held_labels == i).sum() >= 2 for i in others)
            else None,
            seeds=tuple(settings.SYNTHGEN_QUALITY_SEEDS),
            settings=classifier_settings(generator, device),
            sampling={"steps": steps, "seed": QUALITY_SEED + index, "count": len(generated), "class": name},
            measure_usefulness=False,  # the dataset-level test below, where every class gets generated images
        )
        report["negatives"] = {
            "source": "the other classes of this dataset",
            "classes": len(others),
            "images": sum(int((train_labels == i).sum()) for i in others),
            "dropped_as_duplicates": 0,
        }
        reports[name] = report
    shortest = min(names, key=lambda name: (train_labels == names.index(name)).sum().item())
    save_copies_grid(
        reports[shortest], generated_by_class[shortest], train[train_labels == names.index(shortest)], copies_grid
    )
    balance = balance_test(
        real_train=[train[train_labels == i] for i in range(len(names))],
        real_test=[heldout[held_labels == i] if heldout is not None else train[:0] for i in range(len(names))],
        generated=[generated_by_class[name] for name in names],
        class_names=names,
        seeds=tuple(settings.SYNTHGEN_QUALITY_SEEDS),
        settings=classifier_settings(generator, device),
    )
    return {
        **reports[shortest],
        "class": shortest,
        "classes": reports,
        "dataset_usefulness": balance,
        "guidance": guidance,
    }


def chosen_guidance(
    model,
    model_dir: Path,
    train: torch.Tensor,
    train_labels: torch.Tensor,
    steps: int | None,
    classifier: ClassifierSettings,
) -> dict:
    """Choose the model's guidance scale on a validation split of its training photos (apps.ml.quality.guidance; the
    held-out photos are the report's test set and never seen here) and save it into the model's config in
    ``model_dir``, so the report and every generation use it. Too few photos: the config's scale stays."""
    try:
        choice = choose_guidance(
            model,
            train,
            train_labels,
            steps=steps,
            classifier_settings=classifier,
            per_class=min(GUIDANCE_SAMPLES, settings.SYNTHGEN_QUALITY_SAMPLES),
        )
    except ValueError as exc:
        return {"guidance": model.config.guidance_scale, "reason": f"the default was kept: {exc}"}
    model.config.guidance_scale = choice["guidance"]
    model.save(model_dir)
    return choice


def _other_datasets(generator: Generator):
    return Dataset.objects.filter(owner=generator.owner_id).exclude(pk=generator.dataset_id).order_by("-created_at")


def _other_generators(generator: Generator):
    """Ready generators (shared, or the owner's) trained on another dataset than this one."""
    others = Generator.objects.filter(status=Generator.Status.READY).exclude(pk=generator.pk)
    others = others.filter(shared=True) | others.filter(owner=generator.owner_id)
    if generator.dataset_id is not None:
        others = others.exclude(dataset_id=generator.dataset_id)
    return others.order_by("-created_at")


def _dataset_images(dataset: Dataset, size: int, channels: int) -> torch.Tensor | None:
    pictures = []
    for data in storage.read_many(image.working.name for image in dataset.stored_images()[:MAX_NEGATIVE_IMAGES]):
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            pictures.append(picture)
    return stack_training_tensor(pictures, size, channels) if pictures else None


def _generator_images(other: Generator, size: int, channels: int) -> torch.Tensor | None:
    if not other.files_dir:
        return None
    try:
        data = storage.read_bytes(storage.in_folder(other.files_dir, storage.GENERATOR_REFERENCE))
    except FileNotFoundError:
        return None
    return match_format(load_safetensors(data)["images"][:MAX_NEGATIVE_IMAGES], channels=channels, size=size)


def negative_classes(generator: Generator, class_photos: torch.Tensor) -> tuple[list[torch.Tensor], dict]:
    """Up to four "not this class" image sets at the class's size and channels, and where they came from.

    ``class_photos``: all the class's photos (training and held-out); negatives that duplicate
    one of them are dropped. Returns ``(classes, {"source", "classes", "images",
    "dropped_as_duplicates"})``.
    """
    size, channels = class_photos.shape[-1], class_photos.shape[1]
    sources = (
        (
            "your other datasets",
            [lambda d=d: _dataset_images(d, size, channels) for d in _other_datasets(generator)[:MAX_NEGATIVE_CLASSES]],
        ),
        (
            "images of other generators in the registry",
            [
                lambda g=g: _generator_images(g, size, channels)
                for g in _other_generators(generator)[:MAX_NEGATIVE_CLASSES]
            ],
        ),
    )
    classes, dropped = [], 0
    for source, loaders in sources:  # noqa: B007 (read after the loop: where the classes came from)
        for load in loaders:
            images = load()
            if images is None:
                continue
            images, duplicates = drop_matches(images, class_photos)
            dropped += duplicates
            if len(images) >= 2:
                classes.append(images)
        if classes:
            break
    else:
        source = "none: no other dataset or generator to compare with"
    return classes, {
        "source": source,
        "classes": len(classes),
        "images": sum(len(c) for c in classes),
        "dropped_as_duplicates": dropped,
    }
