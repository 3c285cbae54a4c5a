"""Generation jobs: start them (check the request, record the job, queue its task), run them (running.py samples,
writes and stores the images), fail and delete them. The views, the API and the task call these."""

from __future__ import annotations

import logging
import random
from functools import partial

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from apps.core import storage
from apps.core.errors import InvalidInput
from apps.core.storage import StorageUnavailable
from apps.generators.models import Generator
from apps.ml.engine import registry
from apps.ml.engine.base import MAX_GUIDANCE, MAX_SAMPLING_STEPS, MIN_GUIDANCE, GeneratorType

from . import running
from .models import GenerationJob

log = logging.getLogger(__name__)
# The job's Celery task, queued by name (tasks.py registers it; CELERY_TASK_ROUTES sends it to the gpu queue).
GENERATE_TASK = "generation.generate"
Errors = dict[str, list[str] | str]  # per field, as InvalidInput takes them


def start_generation(
    *,
    owner: User,
    generator: Generator,
    count: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
    filter_images: bool = True,
    counts: dict[str, int] | None = None,
    balance_to: int | None = None,
    class_name: str | None = None,
    guidance: float | None = None,
) -> GenerationJob:
    """Queue a job. A conditional generator (one with classes) takes how many of each class in one of four
    ways: ``counts`` ({class: n}), ``balance_to`` (every class filled up to N from its real photos),
    ``count`` + ``class_name`` (one class), or ``count`` alone (spread evenly over the classes);
    ``guidance`` is its classifier-free guidance scale (default: the model's)."""
    errors: Errors = {}
    per_class: dict[str, int] = {}
    if generator.classes:
        per_class, class_errors = class_counts(
            generator, count=count, counts=counts, balance_to=balance_to, class_name=class_name
        )
        errors.update(class_errors)
        errors.update(_guidance_errors(guidance))
    else:
        errors.update(_one_class_errors(counts=counts, balance_to=balance_to, class_name=class_name, guidance=guidance))
    total = sum(per_class.values()) if per_class else count or 0  # 0: none asked for (the check says so)
    maximum = settings.SYNTHGEN_MAX_GENERATION_COUNT
    if "count" not in errors and (not isinstance(total, int) or isinstance(total, bool) or not 1 <= total <= maximum):
        errors["count"] = f"Ask for between 1 and {maximum:,} images."
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed < 2**63):
        errors["seed"] = "The seed must be a whole number between 0 and 2^63-1, or left out."
    generator_type = registry.all_types().get(generator.kind)
    errors.update(_steps_errors(generator, generator_type, steps))
    if not generator.is_ready:
        errors["generator"] = generator.lost_message or (
            f"This generator is {generator.status}; only a ready generator can generate."
        )
    if errors:
        raise InvalidInput(errors)
    if steps is None and generator_type is not None:
        steps = generator_type.default_sampling_steps  # None for a type without steps
    job = GenerationJob.objects.create(
        owner=owner,
        generator=generator,
        count=total,
        seed=random.SystemRandom().randrange(2**31) if seed is None else seed,
        steps=steps,
        filter_images=filter_images,
        counts=per_class,
        guidance=guidance,
    )
    transaction.on_commit(partial(_launch, job.pk))
    return job


def _guidance_errors(guidance: float | None) -> Errors:
    if guidance is None:
        return {}
    if (
        not isinstance(guidance, bool)
        and isinstance(guidance, (int, float))
        and MIN_GUIDANCE <= guidance <= MAX_GUIDANCE
    ):
        return {}
    return {
        "guidance": f"Guidance must be a number from {MIN_GUIDANCE:g} to {MAX_GUIDANCE:g} "
        "(1: no guidance; higher: more typical images of the class, less varied)."
    }


def _one_class_errors(
    *, counts: dict[str, int] | None, balance_to: int | None, class_name: str | None, guidance: float | None
) -> Errors:
    """A one-class generator's job takes none of a conditional generator's options."""
    given = {"counts": counts, "balance_to": balance_to, "class": class_name, "guidance": guidance}
    return {
        field: f"'{field}' is for a generator trained on a labelled dataset (one with classes); "
        "this one learned one class: leave it out."
        for field, value in given.items()
        if value is not None
    }


def _steps_errors(generator: Generator, generator_type: type[GeneratorType] | None, steps: int | None) -> Errors:
    if steps is None:
        return {}
    if generator_type is None or not generator_type.uses_sampling_steps:
        return {"steps": f"{generator.kind} generators take no sampling steps; leave 'steps' out."}
    if not isinstance(steps, int) or not 1 <= steps <= MAX_SAMPLING_STEPS:
        return {"steps": f"Sampling steps must be between 1 and {MAX_SAMPLING_STEPS} (10-250 is typical)."}
    return {}


def class_counts(
    generator: Generator,
    *,
    count: int | None = None,
    counts: dict[str, int] | None = None,
    balance_to: int | None = None,
    class_name: str | None = None,
) -> tuple[dict[str, int], Errors]:
    """({class: images to generate} in the generator's class order, errors) for a conditional generator."""
    real: dict[str, int] = {c["name"]: c["image_count"] for c in generator.classes}
    wanted: dict[str, int]
    ways = [
        name
        for name, value in (("counts", counts), ("balance_to", balance_to), ("class", class_name))
        if value is not None
    ]
    if len(ways) > 1:
        return {}, {ways[1]: f"Give one of counts, balance_to or class (with count), not {' and '.join(ways)}."}
    if counts is not None:
        if count is not None:
            return {}, {"count": "With counts, leave count out: the total is the sum of counts."}
        if not isinstance(counts, dict) or not counts:
            return {}, {"counts": 'Give images per class as an object, e.g. {"sandal": 850}.'}
        unknown = [name for name in counts if name not in real]
        if unknown:
            return {}, {
                "counts": f"No class {', '.join(map(repr, unknown))} in this generator; its classes: {', '.join(real)}."
            }
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts.values()):
            return {}, {"counts": "Each class's count must be a whole number, 0 or more."}
        wanted = {name: counts.get(name, 0) for name in real}
    elif balance_to is not None:
        if count is not None:
            return {}, {"count": "With balance_to, leave count out: each class gets what it lacks."}
        if isinstance(balance_to, bool) or not isinstance(balance_to, int) or balance_to < 1:
            return {}, {"balance_to": "balance_to must be a whole number of images per class, 1 or more."}
        wanted = {name: max(0, balance_to - n) for name, n in real.items()}
        if not any(wanted.values()):
            return {}, {
                "balance_to": f"Every class already has {balance_to} or more photos (the most: "
                f"{max(real.values())}); choose a higher balance_to."
            }
    elif class_name is not None:
        if class_name not in real:
            return {}, {"class": f"No class {class_name!r} in this generator; its classes: {', '.join(real)}."}
        if isinstance(count, bool) or not isinstance(count, int):
            return {}, {"count": "Say how many images of the class to generate (count)."}
        wanted = {name: count if name == class_name else 0 for name in real}
    else:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            return {}, {}  # the count check says what is wrong
        share, extra = divmod(count, len(real))
        wanted = {name: share + (i < extra) for i, name in enumerate(real)}
    total, maximum = sum(wanted.values()), settings.SYNTHGEN_MAX_GENERATION_COUNT
    if not 1 <= total <= maximum:
        field = "counts" if counts is not None else "balance_to" if balance_to is not None else "count"
        return {}, {field: f"That is {total:,} images in all; ask for between 1 and {maximum:,}."}
    return wanted, {}


def _launch(job_id: int) -> None:
    """Queue the job's task by its name: routed as CELERY_TASK_ROUTES says; in eager mode (the tests) it runs here."""
    current_app.signature(GENERATE_TASK, args=(job_id,)).apply_async()


def run_generation(job_id: int) -> None:
    """Sample the job's images in chunks (filtered unless turned off), write them, then zip them.

    Safe to run twice: a redelivered job starts its files over.
    """
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().select_related("generator").get(pk=job_id)
        if job.status in (GenerationJob.Status.DONE, GenerationJob.Status.FAILED):
            return
        job.status = GenerationJob.Status.RUNNING
        job.started_at = timezone.now()
        job.produced = job.dropped = 0
        job.save(update_fields=["status", "started_at", "produced", "dropped", "updated_at"])
    try:
        with storage.scratch(storage.job_scratch_tag(job.pk)) as work:
            produced = running.produce(job, work)
    except StorageUnavailable:
        raise  # not the job's fault: the task retries it (tasks.py), and fails it when the retries run out
    except Exception as exc:
        log.exception("generation job %s failed", job_id)
        fail_job(job_id=job.pk, message=f"Generation failed: {exc}")
        raise
    shortfall = job.count - produced.count
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.DONE,
        output_dir=produced.folder,
        archive=produced.archive,
        finished_at=timezone.now(),
        error=(
            f"Only {produced.count} of {job.count} images passed the quality filter; the generator makes too many "
            "noisy images or copies"
            + (", or images not recognisable as their class" if job.counts else "")
            + ". Train longer, or turn the filter off."
            if shortfall
            else ""
        ),
    )


def fail_job(*, job_id: int, message: str) -> None:
    """Mark the job failed with ``message`` (what its page and the API show)."""
    GenerationJob.objects.filter(pk=job_id).update(
        status=GenerationJob.Status.FAILED, error=message, finished_at=timezone.now()
    )


def delete_job(*, job: GenerationJob) -> None:
    """Delete the job and its stored files (images, manifest, zip)."""
    storage.remove_prefix(storage.job_prefix(job.pk))
    job.delete()
