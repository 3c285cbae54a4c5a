"""Which way a dataset's photos face (:mod:`apps.ml.engine.orientation`), kept on the dataset.

Measured on the working images at 32 px, each class against its own mean, the first time a page
asks for it after the images or their classes changed (an upload adds images in several requests:
measuring at every request would read the whole dataset again each time). The training pipeline
measures its own training photos again in the prepare stage (the generator keeps that result).
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from apps.core import storage

from .imaging import dataset_channels, stack_training_tensor
from .models import Dataset

MEASURE_RESOLUTION = 32


def _signature(dataset: Dataset) -> str:
    """Changes whenever an image is added or removed, or a class changes."""
    rows = dataset.stored_images().order_by("pk").values_list("pk", "label")
    digest = hashlib.sha256(f"{dataset.labelled}".encode())
    for pk, label in rows:
        digest.update(f"{pk}:{label};".encode())
    return digest.hexdigest()[:20]


def dataset_orientation(dataset: Dataset) -> dict:
    """The stored measurement (:meth:`apps.ml.engine.orientation.Orientation.as_dict`), measured again when the
    images changed since; ``{}`` for a dataset without images."""
    signature = _signature(dataset)
    if dataset.orientation.get("signature") == signature:
        return dataset.orientation
    found = measure_dataset(dataset)
    if found:
        found["signature"] = signature
    Dataset.objects.filter(pk=dataset.pk).update(orientation=found)
    dataset.orientation = found
    return found


def measure_dataset(dataset: Dataset) -> dict:
    from apps.ml.engine.orientation import measure  # torch is loaded only when a page asks for it

    images = list(dataset.stored_images().order_by("pk"))
    if not images:
        return {}
    pictures = []
    for data in storage.read_many(image.working.name for image in images):
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            pictures.append(picture)
    tensor = stack_training_tensor(pictures, MEASURE_RESOLUTION, dataset_channels(i.mode for i in images))
    if not dataset.labelled:
        return measure(tensor).as_dict()
    import torch

    names = sorted({image.label for image in images})
    labels = torch.tensor([names.index(image.label) for image in images])
    return measure(tensor, labels, names).as_dict()
