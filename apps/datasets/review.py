"""What a user should know about a dataset before training on it: warnings, and small thumbnails.

``dataset_warnings`` is plain Python over (width, height, mode) facts, so it is easy to test;
``review_dataset`` reads those facts from the database. Every warning says what to do about it.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings
from PIL import Image

RECOMMENDED_IMAGES = 150  # fewer than this: generators learn poorly (the study's lower bound)
ASPECT_TOLERANCE = 1.25  # an aspect ratio this many times off the median counts as a different shape
SIZE_SPREAD = 4.0  # shorter sides differing by more than this factor count as uneven sizes
THUMB_SIZE = 96  # px, longer side of a thumbnail
EXAMPLES = 3  # file names quoted in a warning


class ImageFacts(NamedTuple):
    """What the warnings look at for one image: its original size and its stored mode ('L' or 'RGB')."""

    name: str
    width: int
    height: int
    mode: str


@dataclass
class DatasetReview:
    """A dataset's numbers and the warnings to show before training."""

    image_count: int
    grayscale_count: int
    colour_count: int
    warnings: list[str] = field(default_factory=list)


def dataset_warnings(images: Iterable[ImageFacts], resolution: int | None = None) -> list[str]:
    """Warnings for a set of images: too few, mixed grayscale and colour, uneven shapes or sizes.

    ``resolution`` (the generator's image size) adds a warning for images smaller than it.
    """
    images = list(images)
    if not images:
        return ["This dataset has no images yet: upload PNG, JPEG or WebP photos of one kind of object."]
    warnings = []
    minimum = settings.SYNTHGEN_MIN_TRAINING_IMAGES
    if len(images) < minimum:
        warnings.append(
            f"Only {len(images)} images: training needs at least {minimum}, and {RECOMMENDED_IMAGES} or more "
            "work best. Add more photos of the same object."
        )
    elif len(images) < RECOMMENDED_IMAGES:
        warnings.append(
            f"Only {len(images)} images: generators learn best from {RECOMMENDED_IMAGES} or more. Add more photos "
            "of the same object if you have them, and keep augmentation on."
        )
    warnings += _colour_warning(images)
    warnings += _shape_warning(images)
    warnings += _size_warnings(images, resolution)
    return warnings


def _examples(images: list[ImageFacts]) -> str:
    shown = ", ".join(f"{i.name} ({i.width}×{i.height})" for i in images[:EXAMPLES])
    return shown + (", …" if len(images) > EXAMPLES else "")


def _colour_warning(images: list[ImageFacts]) -> list[str]:
    gray = [i for i in images if i.mode == "L"]
    if not gray or len(gray) == len(images):
        return []
    return [
        f"{len(gray)} of {len(images)} images are grayscale and the rest are in colour (e.g. {_examples(gray)}). "
        "The generator learns colour images, so the grayscale ones teach it washed-out pictures: "
        "use only colour photos, or only grayscale ones."
    ]


def _shape_warning(images: list[ImageFacts]) -> list[str]:
    median = statistics.median(i.width / i.height for i in images)
    odd = [i for i in images if max(i.width / i.height / median, median * i.height / i.width) > ASPECT_TOLERANCE]
    if not odd:
        return []
    return [
        f"{len(odd)} of {len(images)} images have a different shape from most (e.g. {_examples(odd)}). Every image "
        "is cropped to a square around its centre, so their edges are cut off: crop them yourself so the object "
        "is in the middle."
    ]


def _size_warnings(images: list[ImageFacts], resolution: int | None) -> list[str]:
    warnings = []
    sides = [min(i.width, i.height) for i in images]
    if max(sides) > SIZE_SPREAD * min(sides):
        warnings.append(
            f"Image sizes vary a lot: the shorter side goes from {min(sides)} px to {max(sides)} px. Small images look "
            "blurry next to large ones; leave out the smallest, or use photos taken the same way."
        )
    if resolution:
        small = [i for i in images if min(i.width, i.height) < resolution]
        if small:
            warnings.append(
                f"{len(small)} of {len(images)} images are smaller than the {resolution} px the generator works at "
                f"(e.g. {_examples(small)}) and will be enlarged, which blurs them. Choose a smaller image size, "
                "or upload larger photos."
            )
    return warnings


def review_dataset(dataset, resolution: int | None = None) -> DatasetReview:
    """The review of a stored dataset (its images' facts come from the database, no file is read)."""
    facts = [ImageFacts(*row) for row in dataset.images.values_list("original_name", "width", "height", "mode")]
    gray = sum(1 for f in facts if f.mode == "L")
    return DatasetReview(
        image_count=len(facts),
        grayscale_count=gray,
        colour_count=len(facts) - gray,
        warnings=dataset_warnings(facts, resolution),
    )


def thumbnail_png(file, size: int = THUMB_SIZE) -> bytes:
    """A PNG at most ``size`` px on its longer side, from an open image file (a stored working image)."""
    with Image.open(file) as image:
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return buffer.getvalue()
