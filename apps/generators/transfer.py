"""Fine-tuning from a base generator: which generators can be a base for a request, the refusals, and the copy of
the base's files a training run starts from. The weight surgery itself is apps.ml.engine.transfer (no Django).

A base is a ready generator the user can see (their own or a shared one) of the same type, resolution and number
of channels. When the child is asked for, the base's files (weights, config, a DCGAN's discriminator) are copied
under the run's prefix (``runs/<id>/base/``): the run trains from that copy, so deleting or unsharing the base
afterwards does not touch the child, whose own weights are its own once trained.
"""

from __future__ import annotations

from django.db.models import QuerySet

from apps.core import storage
from apps.core.errors import InvalidInput
from apps.ml.engine import registry
from apps.ml.engine.transfer import BASE_FILES, CONFIG_FILE, WEIGHTS_FILE

from .models import Generator
from .selectors import generators_for


def compatible_bases(user, *, kind: str, resolution: int, channels: int) -> QuerySet[Generator]:
    """The ready generators ``user`` can see that a new generator of this type, resolution and channels can start
    from, newest first."""
    return generators_for(user).filter(
        status=Generator.Status.READY, kind=kind, resolution=resolution, channels=channels
    )


def possible_bases(user) -> QuerySet[Generator]:
    """Every ready generator ``user`` can see of a type that can be fine-tuned (the wizard's "Start from"), newest
    first; a request then needs one of the same type, resolution and channels (:func:`check_base`)."""
    kinds = [key for key, cls in registry.all_types().items() if cls.supports_fine_tuning]
    return (
        generators_for(user).filter(status=Generator.Status.READY, kind__in=kinds) if user else Generator.objects.none()
    )


def describe_base(generator: Generator) -> str:
    """One line for the wizard: name, type and size, classes, quality verdict, photos."""
    classes = f"classes {', '.join(c['name'] for c in generator.classes)}" if generator.classes else "one class"
    photos = (
        sum(c.get("image_count", 0) for c in generator.classes)
        if generator.classes
        else generator.dataset.images.count()
        if generator.dataset
        else None
    )
    verdict = f"quality: {(generator.quality or {}).get('verdict') or 'no report'}"
    return (
        f"{generator.name} — {generator.kind}, {generator.resolution} px, "
        f"{'grayscale' if generator.channels == 1 else 'colour'}; {classes}; {verdict}; "
        f"{photos if photos is not None else 'unknown number of'} photos"
    )


def _shape(kind: str, resolution: int, channels: int) -> str:
    return f"{kind}, {resolution} px, {'grayscale' if channels == 1 else 'colour'}"


def _what_fits(user, *, kind: str, resolution: int, channels: int) -> str:
    fits = [
        f"{g.pk} '{g.name}'" for g in compatible_bases(user, kind=kind, resolution=resolution, channels=channels)[:20]
    ]
    if not fits:
        return (
            f"None of the generators you can see fits ({_shape(kind, resolution, channels)}); leave "
            "base_generator out to train from scratch."
        )
    return f"Generators that would fit ({_shape(kind, resolution, channels)}): {', '.join(fits)}."


def check_base(*, user, base_id: int, kind: str, resolution: int, channels: int) -> Generator:
    """The base generator ``base_id`` for a new generator of ``kind``, ``resolution`` and ``channels``; raises
    InvalidInput (``base_generator``) naming the mismatch and listing the generators that would fit."""
    fits = dict(user=user, kind=kind, resolution=resolution, channels=channels)
    base = generators_for(user).filter(pk=base_id).first()
    if base is None:
        problem = f"There is no generator {base_id} that you can see."
    elif not base.is_ready:
        problem = (
            f"Generator {base.pk} '{base.name}' is {base.status}, not ready: only a trained generator can be a base."
        )
    elif base.kind != kind:
        problem = f"Generator {base.pk} '{base.name}' is a {base.kind} generator; this one is {kind}."
    elif not registry.get(kind).supports_fine_tuning:
        problem = f"{kind} generators cannot start from another generator."
    elif base.resolution != resolution:
        problem = f"Generator {base.pk} '{base.name}' makes {base.resolution} px images; this one {resolution} px."
    elif base.channels != channels:
        problem = (
            f"Generator {base.pk} '{base.name}' makes {'grayscale' if base.channels == 1 else 'colour'} images; "
            f"this dataset is {'grayscale' if channels == 1 else 'colour'}."
        )
    else:
        return base
    raise InvalidInput({"base_generator": f"{problem} {_what_fits(**fits)}"})


def snapshot_base(*, run_id: int, base: Generator) -> None:
    """Copy the base's files the run starts from under ``runs/<run_id>/base/`` (what the base has of BASE_FILES);
    raises InvalidInput (``base_generator``) when its weights or config are gone, rather than let the run start
    from random weights under a "fine-tuned from" name."""
    missing = [
        name for name in (WEIGHTS_FILE, CONFIG_FILE) if not storage.exists(storage.in_folder(base.files_dir, name))
    ]
    if missing:
        raise InvalidInput(
            {
                "base_generator": f"Generator {base.pk} '{base.name}' has lost its model files "
                f"({', '.join(missing)}): it cannot be a base. Train from scratch."
            }
        )
    for name in BASE_FILES:
        source = storage.in_folder(base.files_dir, name)
        if storage.exists(source):
            storage.write_bytes(
                storage.in_folder(storage.run_file(run_id, storage.RUN_BASE), name), storage.read_bytes(source)
            )


def drop_snapshot(run_id: int) -> None:
    """Remove the run's copy of its base (its rows were rolled back, or it is done with it)."""
    storage.remove_prefix(storage.run_file(run_id, storage.RUN_BASE))


def base_snapshot(run_id: int) -> str | None:
    """Where the run's copy of its base lives in storage; None for a run trained from scratch."""
    prefix = storage.run_file(run_id, storage.RUN_BASE)
    return prefix if storage.exists(storage.in_folder(prefix, CONFIG_FILE)) else None
