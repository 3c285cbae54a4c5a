"""Starting, cancelling, sharing and deleting generators. Keyword-only functions that write."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from celery import chain, signature
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from apps.core import storage
from apps.core.errors import InvalidInput
from apps.datasets.models import Dataset
from apps.ml.engine import registry
from apps.ml.engine.base import PRESETS, RESOLUTIONS
from apps.ml.engine.config import ConfigError, settings_of
from apps.ml.engine.device import device_class

from . import transfer
from .models import Generator, TrainingRun
from .recipes import recipe, suggest_preset, suggest_resolution
from .selectors import generators_for
from .stages import STAGE_ORDER

log = logging.getLogger(__name__)


def generator_files_dir(generator_id: int) -> str:
    """Where a generator's weights, config and grids live in storage (apps/core/storage.py)."""
    return storage.generator_prefix(generator_id)


def start_training(
    *,
    owner: User,
    name: str,
    dataset: Dataset,
    kind: str,
    resolution: int | None = None,
    augment: bool = False,
    preset: str | None = None,
    shared: bool = True,
    options: dict[str, Any] | None = None,
    base_generator: int | None = None,
) -> Generator:
    """Create a generator and its training run, and queue the pipeline once the transaction commits.

    ``base_generator``: the id of a ready generator the owner can see, of the same type, resolution and channels,
    to fine-tune (apps.generators.transfer): the run starts from its weights with the type's fine-tuning recipe
    (apps.ml.engine.config.build_config(base=...)) unless ``options`` set those settings. ``resolution`` left out
    is then the base's. Any other base is refused (``base_generator``), and nothing is created."""
    if base_generator is not None and resolution is None:  # the base's resolution (a base not seen: refused below)
        visible = generators_for(owner).filter(pk=base_generator).first()
        resolution = visible.resolution if visible is not None else None
    if resolution is None:
        resolution = suggest_resolution(dataset)
    image_count = dataset.images.count()
    errors: dict[str, list[str] | str] = {}
    _check_request(
        errors,
        owner=owner,
        name=name,
        dataset=dataset,
        image_count=image_count,
        kind=kind,
        resolution=resolution,
        preset=preset,
    )
    base = None
    if base_generator is not None and not errors.keys() & {"kind", "resolution"}:
        try:
            base = transfer.check_base(
                user=owner, base_id=base_generator, kind=kind, resolution=resolution, channels=dataset.channels
            )
        except InvalidInput as refused:
            errors.update(refused.errors)
    if options and not errors.keys() & {"kind", "resolution", "preset", "base_generator"}:
        # Checked against the config the train stage will build for this very request.
        if problems := option_errors(
            kind,
            options,
            resolution=resolution,
            channels=dataset.channels,
            preset=preset or suggest_preset(image_count, kind),
            image_count=image_count,
            base=base.config if base is not None else None,
        ):
            errors["options"] = problems
    if errors:
        raise InvalidInput(errors)
    generator = Generator(
        owner=owner,
        name=name.strip(),
        kind=kind,
        resolution=resolution,
        channels=dataset.channels,
        dataset=dataset,
        augment=augment,
        preset=preset or suggest_preset(image_count, kind),
        shared=shared,
        options=options or {},
        base_generator=base,
        base_name=base.name if base is not None else "",
    )
    run = _create_with_run(generator, base)
    transaction.on_commit(lambda: launch_pipeline(run.pk))
    return generator


def _check_request(
    errors: dict[str, list[str] | str],
    *,
    owner: User,
    name: str,
    dataset: Dataset,
    image_count: int,
    kind: str,
    resolution: int,
    preset: str | None,
) -> None:
    """What is wrong with a training request's type, size, preset, dataset and name, into ``errors`` by field (in
    this order: the messages are shown in it)."""
    if kind not in registry.all_types():
        errors["kind"] = f"Unknown generator type '{kind}'. Choose one of: {', '.join(registry.all_types())}."
    if resolution not in RESOLUTIONS:
        errors["resolution"] = f"Resolution must be one of {', '.join(map(str, RESOLUTIONS))} pixels."
    if preset and preset not in PRESETS:
        errors["preset"] = f"Preset must be one of {', '.join(PRESETS)}, or left out to choose by dataset size."
    if dataset.owner_id != owner.pk:
        errors["dataset"] = "Dataset not found."
    minimum = settings.SYNTHGEN_MIN_TRAINING_IMAGES
    if image_count < minimum:
        errors["dataset"] = (
            f"This dataset has {image_count} images; training needs at least {minimum}. "
            "Upload more images of the same object first."
        )
    if not name.strip():
        errors["name"] = "Give the generator a name."
    if dataset.labelled and "kind" not in errors and not registry.get(kind).supports_labels:
        learners = ", ".join(key for key, cls in registry.all_types().items() if cls.supports_labels)
        errors["kind"] = (
            f"{kind} generators learn one class; this dataset has classes. Choose {learners} (one "
            "model learns every class), or upload each class as its own dataset."
        )


def _create_with_run(generator: Generator, base: Generator | None) -> TrainingRun:
    """Save ``generator`` with its training run and, to fine-tune, the run's copy of the base's files: all or none
    (a base whose files cannot be copied leaves nothing behind)."""
    run = None
    try:
        with transaction.atomic():
            generator.save(force_insert=True)
            run = TrainingRun.objects.create(generator=generator)
            if base is not None:
                transfer.snapshot_base(run_id=run.pk, base=base)
    except BaseException:
        if run is not None and base is not None:  # the rows were rolled back: so goes the copy of the base
            with contextlib.suppress(Exception):  # best effort (the storage may be what failed); the error stands
                transfer.drop_snapshot(run.pk)
        raise
    return run


def tunable_settings(kind: str) -> dict[str, Any]:
    """The knobs of a generator type with their standard-preset values, for the API and the wizard."""
    return settings_of(registry.get(kind))


def option_errors(
    kind: str,
    options: dict[str, Any],
    *,
    resolution: int,
    channels: int = 3,
    preset: str = "standard",
    image_count: int = 500,
    base: dict[str, Any] | None = None,
) -> list[str]:
    """What is wrong with advanced settings (unknown keys, wrong types, values out of range), checked
    against the config the train stage will build: the same request and this machine's device class.

    ``image_count`` is the dataset's (:func:`apps.generators.recipes.recipe` takes the held-out photos off).
    """
    try:
        recipe(
            kind,
            resolution=resolution,
            channels=channels,
            preset=preset,
            image_count=image_count,
            device=device_class(),
            options=options,
            base=base,
        )
    except ConfigError as error:
        return error.problems
    return []


def stage_task_name(stage: str) -> str:
    """The Celery task that runs ``stage`` (tasks.py): "generators.<stage>"."""
    return f"generators.{stage}"


def launch_pipeline(run_id: int) -> None:
    """Queue the whole chain for a run, in STAGE_ORDER, by task name. Train and evaluate go to the gpu queue
    (CELERY_TASK_ROUTES)."""
    chain(*(signature(stage_task_name(stage), args=(run_id,), immutable=True) for stage in STAGE_ORDER)).apply_async()


def cancel_run(*, run: TrainingRun) -> TrainingRun:
    """Ask a run to stop. A queued run stops at once; a training run stops at its next step."""
    if not run.is_active:
        return run
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        run.cancel_requested = True
        run.save(update_fields=["cancel_requested", "updated_at"])
        if run.status == TrainingRun.Status.QUEUED:
            mark_cancelled(run=run)
    return run


def mark_cancelled(*, run: TrainingRun) -> None:
    run.status = TrainingRun.Status.CANCELLED
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at", "updated_at"])
    Generator.objects.filter(pk=run.generator_id).update(status=Generator.Status.CANCELLED)
    try:
        storage.remove_prefix(storage.run_prefix(run.pk))
    except storage.StorageUnavailable:  # the run stays cancelled; its files are left behind
        log.warning("run %s cancelled, but its files could not be removed from storage", run.pk, exc_info=True)


def set_shared(*, generator: Generator, shared: bool) -> Generator:
    generator.shared = shared
    generator.save(update_fields=["shared", "updated_at"])
    return generator


def delete_generator(*, generator: Generator) -> None:
    """Delete a generator with its files (weights, grids) and its runs' scratch space."""
    for run in generator.runs.all():
        if run.is_active:
            cancel_run(run=run)
        storage.remove_prefix(storage.run_prefix(run.pk))
    storage.remove_prefix(generator_files_dir(generator.pk))
    generator.delete()
