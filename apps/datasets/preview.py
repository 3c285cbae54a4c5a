"""The augmentation preview: what augmentation does to a few of the user's own images.

One PNG grid: the first row holds a few of the dataset's images as the generator will see them
(resized and centre-cropped to its resolution); each row below holds one augmented copy of each,
made by the same function the training pipeline uses (``ml.augment.augment_dataset``).
"""

from __future__ import annotations

import io

from PIL import Image

from .imaging import stack_training_tensor
from .orientation import dataset_orientation

PREVIEW_IMAGES = 4  # columns: how many of the user's images are shown
PREVIEW_COPIES = 3  # rows below the originals: augmented copies of each
DISPLAY_SIZE = 96  # px per image in the grid; small resolutions are enlarged (nearest) so they can be seen
PADDING = 4  # px between the images of the grid


def preview_images(dataset, count: int = PREVIEW_IMAGES) -> list:
    """``count`` images spread over the dataset (not only the first ones), as stored DatasetImage rows."""
    ids = list(dataset.stored_images().order_by("id").values_list("id", flat=True))
    if not ids:
        return []
    step = max(1, len(ids) // count)
    chosen = ids[::step][:count]
    return list(dataset.images.filter(id__in=chosen).order_by("id"))


def preview_columns(image_count: int) -> int:
    """How many of the dataset's images the preview shows."""
    return min(PREVIEW_IMAGES, image_count)


def preview_size(image_count: int, resolution: int) -> tuple[int, int]:
    """(width, height) in px of the preview grid of a dataset with ``image_count`` images (for the page layout)."""
    columns = preview_columns(image_count)
    cell = resolution * _scale(resolution) + PADDING
    return columns * cell + PADDING, (1 + PREVIEW_COPIES) * cell + PADDING


def _scale(resolution: int) -> int:
    return max(1, DISPLAY_SIZE // resolution)


def augmentation_preview_png(
    dataset, resolution: int, *, count: int = PREVIEW_IMAGES, copies: int = PREVIEW_COPIES, seed: int = 0
) -> bytes:
    """PNG bytes of the preview grid (module docstring). Raises ValueError for a dataset without images."""
    from apps.ml.engine.augment import augment_dataset  # torch is loaded only when a preview is asked for
    from apps.ml.engine.images import make_grid

    rows = preview_images(dataset, count)
    if not rows:
        raise ValueError("the dataset has no images")
    pictures = []
    for row in rows:
        with row.working.open("rb") as file, Image.open(file) as image:
            image.load()
            pictures.append(image.copy())
    batch = stack_training_tensor(pictures, resolution, dataset.channels)  # as the generator will see them
    found = dataset_orientation(dataset)  # mirror images and turns only where the photos show them
    # originals, then copy 1 of each, copy 2 of each, ...
    augmented = augment_dataset(
        batch, copies, seed, mirror=bool(found.get("mirrors")), quarter_turns=bool(found.get("rotations"))
    )
    scale = _scale(resolution)
    if scale > 1:
        augmented = augmented.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    grid = make_grid(augmented, columns=len(pictures), padding=PADDING)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()
