"""What a training request trains with: the size and preset chosen for what the user left out, and the config the
train stage builds (apps.ml.engine.config.build_config) for a request, as the wizard, the API's checks and the time
estimates predict it before the photos are split."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from apps.datasets.models import Dataset
from apps.ml.engine import registry
from apps.ml.engine.config import build_config
from apps.ml.quality.heldout import holdout_count


def suggest_resolution(dataset: Dataset) -> int:
    """64 px, or 32 px when most images are smaller than 64 px (upscaling only blurs them)."""
    short_sides = sorted(min(w, h) for w, h in dataset.images.values_list("width", "height"))
    if short_sides and short_sides[len(short_sides) // 2] < 64:
        return 32
    return 64


def suggest_preset(image_count: int, kind: str) -> str:
    """A sensible preset for a dataset of this size and generator type, for users who leave it out.

    Under 300 images the type decides (``small_set_preset``): a GAN needs the steady schedule of
    standard, while a diffusion model trained that long on so few images starts to copy them.
    """
    if image_count < 300:
        known = registry.all_types()
        return known[kind].small_set_preset if kind in known else "standard"
    return "quick" if image_count < 2000 else "standard"


def recipe(
    kind: str,
    *,
    resolution: int,
    channels: int,
    preset: str,
    image_count: int,
    device: str,
    options: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config the train stage builds for this request on a ``device``-class worker (the operator's overrides
    included, then the user's ``options`` over a fine-tuning ``base``'s config), for ``image_count`` photos in the
    dataset: the train stage counts the photos left after the held-out split, which :func:`holdout_count`
    predicts. Raises ConfigError listing what is wrong."""
    return build_config(
        registry.get(kind),
        resolution=resolution,
        channels=channels,
        preset=preset,
        image_count=max(image_count - holdout_count(image_count), 0),
        device=device,
        overrides=settings.SYNTHGEN_TRAINING_OVERRIDES.get(kind, {}),
        options=options,
        base=base,
    )
