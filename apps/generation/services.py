"""Generation jobs: queue them, and run them (sample, write PNGs + manifest + zip)."""
from __future__ import annotations

import logging
import random
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.core.errors import InvalidInput
from apps.core import storage
from apps.core.storage import StorageUnavailable
from apps.ml import registry
from apps.ml import filtering
from safetensors.torch import load as load_safetensors
from apps.ml.device import pick_device
from apps.generators.models import Generator

from . import export
from .models import GenerationJob

log = logging.getLogger(__name__)
CHUNK = 500  # images sampled (and progress recorded) at a time


def start_generation(
    *, owner, generator: Generator, count, seed=None, steps=None, filter_images: bool = True
) -> GenerationJob:
    errors: dict[str, str] = {}
    maximum = settings.SYNTHGEN_MAX_GENERATION_COUNT
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= maximum:
        errors["count"] = f"Ask for between 1 and {maximum:,} images."
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed < 2**63):
        errors["seed"] = "The seed must be a whole number between 0 and 2^63-1, or left out."
    generator_type = registry.all_types().get(generator.kind)
    if steps is not None:
        if generator_type is None or not generator_type.uses_sampling_steps:
            errors["steps"] = f"{generator.kind} generators take no sampling steps; leave 'steps' out."
        elif not isinstance(steps, int) or not 1 <= steps <= 1000:
            errors["steps"] = "Sampling steps must be between 1 and 1000 (10-250 is typical)."
    if not generator.is_ready:
        errors["generator"] = f"This generator is {generator.status}; only a ready generator can generate."
    if errors:
        raise InvalidInput(errors)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    if steps is None and generator_type is not None and generator_type.uses_sampling_steps:
        steps = generator_type.default_sampling_steps
    job = GenerationJob.objects.create(
        owner=owner, generator=generator, count=count, seed=seed, steps=steps, filter_images=filter_images
    )
    transaction.on_commit(lambda: _launch(job.pk))
    return job


def _launch(job_id: int) -> None:
    from .tasks import generate

    generate.delay(job_id)


@lru_cache(maxsize=4)
def _load_model(generator_id: int, kind: str, files_dir: str, version: str):
    """The generator's model, fetched from storage into a scratch folder and loaded (into memory)."""
    with storage.scratch(f"generator{generator_id}") as folder:
        storage.fetch(files_dir, folder, skip=storage.GENERATOR_EXTRAS)
        return registry.get(kind).load(folder, device=pick_device())


def _stored_images(name: str):
    try:
        return load_safetensors(storage.read_bytes(name))["images"]
    except FileNotFoundError:
        return None


@lru_cache(maxsize=4)
def _filter_reference(generator_id: int, files_dir: str, version: str) -> filtering.FilterReference | None:
    """Thresholds calibrated on the generator's real images (None for generators without them)."""
    reference = _stored_images(f"{files_dir}/reference.safetensors")
    if reference is None:
        return None
    return filtering.build_reference(
        reference,
        _stored_images(f"{files_dir}/heldout.safetensors"),
        _stored_images(f"{files_dir}/augmented.safetensors"),
    )


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
        with storage.scratch(f"job{job.pk}") as work:
            produced, folder_relative, zip_relative = _generate(job, work)
    except StorageUnavailable:
        raise  # not the job's fault: the task retries it (tasks.py), and fails it when the retries run out
    except Exception as exc:
        log.exception("generation job %s failed", job_id)
        fail_job(job_id=job.pk, message=f"Generation failed: {exc}")
        raise
    shortfall = job.count - produced
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.DONE,
        output_dir=folder_relative,
        archive=zip_relative,
        finished_at=timezone.now(),
        error=(f"Only {produced} of {job.count} images passed the quality filter; the generator makes too many "
               "noisy images or copies. Train longer, or turn the filter off." if shortfall else ""),
    )


def fail_job(*, job_id: int, message: str) -> None:
    GenerationJob.objects.filter(pk=job_id).update(
        status=GenerationJob.Status.FAILED, error=message, finished_at=timezone.now()
    )


def _generate(job: GenerationJob, work) -> tuple[int, str, str]:
    """Sample, filter and write the job's images in the local folder ``work``, zip them, store both.

    Returns (images produced, the images' folder in storage, the zip's name in storage).
    """
    generator = job.generator
    folder = work / "images"
    storage.remove_prefix(storage.job_prefix(job.pk))  # a job delivered again starts its files over
    version = generator.updated_at.isoformat()
    model = _load_model(generator.pk, generator.kind, generator.files_dir, version)
    reference = _filter_reference(generator.pk, generator.files_dir, version) if job.filter_images else None

    def sample(n: int, seed: int):
        return model.sample(n, seed=seed, steps=job.steps)

    manifest_images, dropped, produced = [], {"noise": 0, "blank": 0, "copy": 0}, 0
    for chunk_index, start in enumerate(range(0, job.count, CHUNK)):
        wanted = min(CHUNK, job.count - start)
        batch = filtering.generate_filtered(sample, wanted, reference, seed=job.seed, chunk=chunk_index)
        names = export.write_pngs(batch.images, folder, produced)
        manifest_images += [{"file": name, **scores} for name, scores in zip(names, batch.scores)]
        produced += len(names)
        for reason, n in batch.dropped.items():
            dropped[reason] += n
        GenerationJob.objects.filter(pk=job.pk).update(produced=produced, dropped=sum(dropped.values()))
    export.write_manifest(
        folder,
        {
            "generator": {"id": generator.pk, "name": generator.name, "kind": generator.kind,
                          "resolution": generator.resolution, "version": version},
            "job": {"id": job.pk, "count": job.count, "produced": produced, "seed": job.seed,
                    "steps": job.steps, "filtered": reference is not None},
            "filter": {"dropped": dropped, "thresholds": reference.thresholds() if reference else None},
            "images": manifest_images,
        },
    )
    name = slugify(generator.name) or "images"
    zip_path = export.write_zip(folder, work / "zip" / f"{name}-{job.pk}.zip", arc_prefix=name)
    folder_relative = f"{storage.job_prefix(job.pk)}/images"
    zip_relative = f"{storage.job_prefix(job.pk)}/{zip_path.name}"
    storage.publish(folder, folder_relative)
    storage.publish_file(zip_path, zip_relative)
    return produced, folder_relative, zip_relative


def delete_job(*, job: GenerationJob) -> None:
    storage.remove_prefix(storage.job_prefix(job.pk))
    job.delete()
