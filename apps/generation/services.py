"""Generation jobs: queue them, and run them (sample, write PNGs + manifest + zip)."""

from __future__ import annotations

import logging
import random
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from safetensors.torch import load as load_safetensors

from apps.core import storage
from apps.core.errors import InvalidInput
from apps.core.storage import StorageUnavailable
from apps.generators.models import Generator
from apps.ml.engine import registry
from apps.ml.engine.base import MAX_SAMPLING_STEPS
from apps.ml.engine.device import pick_device
from apps.ml.quality import filtering
from apps.ml.quality.class_filter import ClassFilter, train_class_filter

from . import export
from .models import GenerationJob

log = logging.getLogger(__name__)
CHUNK = 500  # images sampled (and progress recorded) at a time
GALLERY_SIZE = 48  # images stored one by one for the job's page (the zip holds every image)


def gallery_files(folder) -> list:
    """The first GALLERY_SIZE PNGs of a job's local folder; with class folders, the first of each class in turn."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        return sorted(folder.glob("*.png"))[:GALLERY_SIZE]
    per_class = [sorted(c.glob("*.png")) for c in classes]
    picked = [files[i] for i in range(GALLERY_SIZE) for files in per_class if i < len(files)]
    return sorted(picked[:GALLERY_SIZE])


def start_generation(
    *,
    owner,
    generator: Generator,
    count=None,
    seed=None,
    steps=None,
    filter_images: bool = True,
    counts: dict | None = None,
    balance_to=None,
    class_name: str | None = None,
    guidance=None,
) -> GenerationJob:
    """Queue a job. A conditional generator (one with classes) takes how many of each class in one of four
    ways: ``counts`` ({class: n}), ``balance_to`` (every class filled up to N from its real photos),
    ``count`` + ``class_name`` (one class), or ``count`` alone (spread evenly over the classes);
    ``guidance`` is its classifier-free guidance scale (default: the model's)."""
    errors: dict[str, str] = {}
    maximum = settings.SYNTHGEN_MAX_GENERATION_COUNT
    per_class = {}
    if generator.classes:
        per_class, class_errors = class_counts(
            generator, count=count, counts=counts, balance_to=balance_to, class_name=class_name
        )
        errors.update(class_errors)
        if per_class:
            count = sum(per_class.values())
        if guidance is not None and (
            isinstance(guidance, bool)
            or not isinstance(guidance, (int, float))
            or not MIN_GUIDANCE <= guidance <= MAX_GUIDANCE
        ):
            errors["guidance"] = (
                f"Guidance must be a number from {MIN_GUIDANCE:g} to {MAX_GUIDANCE:g} "
                "(1: no guidance; higher: more typical images of the class, less varied)."
            )
    else:
        for field, value in (
            ("counts", counts),
            ("balance_to", balance_to),
            ("class", class_name),
            ("guidance", guidance),
        ):
            if value is not None:
                errors[field] = (
                    f"'{field}' is for a generator trained on a labelled dataset (one with classes); "
                    "this one learned one class: leave it out."
                )
    if "count" not in errors and (not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= maximum):
        errors["count"] = f"Ask for between 1 and {maximum:,} images."
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed < 2**63):
        errors["seed"] = "The seed must be a whole number between 0 and 2^63-1, or left out."
    generator_type = registry.all_types().get(generator.kind)
    if steps is not None:
        if generator_type is None or not generator_type.uses_sampling_steps:
            errors["steps"] = f"{generator.kind} generators take no sampling steps; leave 'steps' out."
        elif not isinstance(steps, int) or not 1 <= steps <= MAX_SAMPLING_STEPS:
            errors["steps"] = f"Sampling steps must be between 1 and {MAX_SAMPLING_STEPS} (10-250 is typical)."
    if not generator.is_ready:
        errors["generator"] = f"This generator is {generator.status}; only a ready generator can generate."
    if errors:
        raise InvalidInput(errors)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    if steps is None and generator_type is not None and generator_type.uses_sampling_steps:
        steps = generator_type.default_sampling_steps
    job = GenerationJob.objects.create(
        owner=owner,
        generator=generator,
        count=count,
        seed=seed,
        steps=steps,
        filter_images=filter_images,
        counts=per_class,
        guidance=guidance,
    )
    transaction.on_commit(lambda: _launch(job.pk))
    return job


MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 20.0


def class_counts(
    generator: Generator, *, count=None, counts=None, balance_to=None, class_name=None
) -> tuple[dict[str, int], dict[str, str]]:
    """({class: images to generate} in the generator's class order, errors) for a conditional generator."""
    real = {c["name"]: c["image_count"] for c in generator.classes}
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
    from .tasks import generate

    generate.delay(job_id)


@lru_cache(maxsize=4)
def _load_model(generator_id: int, kind: str, files_dir: str, version: str):
    """The generator's model, fetched from storage into a scratch folder and loaded (into memory)."""
    with storage.scratch(f"generator{generator_id}") as folder:
        storage.fetch(files_dir, folder, skip=storage.GENERATOR_EXTRAS)
        return registry.get(kind).load(folder, device=pick_device())


def _stored_tensors(name: str) -> dict | None:
    try:
        return load_safetensors(storage.read_bytes(name))
    except FileNotFoundError:
        return None


@lru_cache(maxsize=4)
def _filter_references(
    generator_id: int, files_dir: str, version: str, classes: int
) -> dict[int | None, filtering.FilterReference] | None:
    """Thresholds calibrated on the generator's real images (None for generators without them): one
    reference under the key None for a one-class generator, one per class index for a conditional one
    (copies are looked for among the image's own class's photos, by that class's thresholds)."""
    train = _stored_tensors(f"{files_dir}/reference.safetensors")
    if train is None:
        return None
    heldout = _stored_tensors(f"{files_dir}/heldout.safetensors") or {}
    augmented = _stored_tensors(f"{files_dir}/augmented.safetensors") or {}
    if classes and "labels" in train:
        return filtering.build_class_references(
            train["images"],
            train["labels"].long(),
            classes,
            heldout=heldout.get("images"),
            heldout_labels=heldout["labels"].long() if "labels" in heldout else None,
            augmented=augmented.get("images"),
            augmented_labels=augmented["labels"].long() if "labels" in augmented else None,
        )
    return {None: filtering.build_reference(train["images"], heldout.get("images"), augmented.get("images"))}


CLASS_FILTER_FILE = "class_filter.safetensors"  # in the generator's folder, next to its reference images


_CLASS_FILTERS: dict[tuple, ClassFilter | None] = {}  # this process's filters: (generator, folder, classes)


def class_filter(generator: Generator) -> ClassFilter | None:
    """The class filter of a conditional generator (None for one-class generators and those without labelled
    reference images): trained on its training photos and calibrated on its held-out ones the first time a
    job needs it, then kept in the generator's folder (and in this process) so no job trains it again."""
    if not generator.classes:
        return None
    key = (generator.pk, generator.files_dir, len(generator.classes))
    if key not in _CLASS_FILTERS:
        while len(_CLASS_FILTERS) >= 4:
            _CLASS_FILTERS.pop(next(iter(_CLASS_FILTERS)))
        _CLASS_FILTERS[key] = _stored_or_trained_class_filter(generator)
    return _CLASS_FILTERS[key]


def _stored_or_trained_class_filter(generator: Generator) -> ClassFilter | None:
    from apps.generators.evaluation import classifier_settings  # the report's classifier recipe (steps, mirror)

    name = f"{generator.files_dir}/{CLASS_FILTER_FILE}"
    try:
        stored = ClassFilter.from_bytes(storage.read_bytes(name))
    except FileNotFoundError:
        stored = None
    if stored is not None and stored.classes == len(generator.classes):
        return stored
    train = _stored_tensors(f"{generator.files_dir}/reference.safetensors")
    if train is None or "labels" not in train:
        return None
    heldout = _stored_tensors(f"{generator.files_dir}/heldout.safetensors") or {}
    try:
        trained = train_class_filter(
            train["images"],
            train["labels"].long(),
            heldout.get("images"),
            heldout["labels"].long() if "labels" in heldout else None,
            classes=len(generator.classes),
            settings=classifier_settings(generator, pick_device()),
        )
    except ValueError:  # a class without training photos: nothing to learn it from
        log.warning("generator %s: no class filter (a class has no training photos)", generator.pk)
        return None
    storage.write_bytes(name, trained.to_bytes())
    return trained


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
        error=(
            f"Only {produced} of {job.count} images passed the quality filter; the generator makes too many "
            "noisy images or copies"
            + (", or images not recognisable as their class" if job.counts else "")
            + ". Train longer, or turn the filter off."
            if shortfall
            else ""
        ),
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
    references = (
        _filter_references(generator.pk, generator.files_dir, version, len(generator.classes))
        if job.filter_images
        else None
    )
    # Conditional generators: every image is scored by the class filter; with the filter on, images it
    # does not recognise as their class are dropped and replaced.
    classifier = class_filter(generator)

    manifest_images, dropped, produced = [], {"noise": 0, "blank": 0, "copy": 0, "class": 0}, 0
    metadata_rows = []
    dataset_name = slugify(generator.name) or "images"
    # (class index, class name or None, images): one part for a one-class job, a part per class otherwise.
    names = [c["name"] for c in generator.classes]
    parts = [(names.index(name), name, n) for name, n in job.counts.items() if n] or [(None, None, job.count)]
    chunk_index = 0
    for label, class_name, class_count in parts:
        reference = references[label] if references else None
        by_class = {"labels": label, "guidance": job.guidance} if label is not None else {}

        def sample(n: int, seed: int, by_class=by_class):
            return model.sample(n, seed=seed, steps=job.steps, **by_class)

        target, written = (folder / class_name, 0) if class_name else (folder, produced)
        for start in range(0, class_count, CHUNK):
            wanted = min(CHUNK, class_count - start)
            check = (
                (lambda images, label=label: classifier.check(images, label))
                if classifier is not None and label is not None
                else None
            )
            batch = filtering.generate_filtered(
                sample, wanted, reference, seed=job.seed, chunk=chunk_index, class_check=check
            )
            chunk_index += 1
            files = export.write_pngs(batch.images, target, written)
            prefix = f"{class_name}/" if class_name else ""
            manifest_images += [
                {"file": prefix + name, **({"class": class_name} if class_name else {}), "score": None, **scores}
                for name, scores in zip(files, batch.scores)
            ]
            metadata_rows += [
                export.metadata_row(prefix + name, class_name or dataset_name, scores.get("score"))
                for name, scores in zip(files, batch.scores)
            ]
            written += len(files)
            produced += len(files)
            for reason, n in batch.dropped.items():
                dropped[reason] += n
            GenerationJob.objects.filter(pk=job.pk).update(produced=produced, dropped=sum(dropped.values()))
    export.write_manifest(
        folder,
        {
            "generator": {
                "id": generator.pk,
                "name": generator.name,
                "kind": generator.kind,
                "resolution": generator.resolution,
                "version": version,
            },
            "job": {
                "id": job.pk,
                "count": job.count,
                "produced": produced,
                "seed": job.seed,
                "steps": job.steps,
                "filtered": references is not None,
                **({"counts": job.counts, "guidance": job.guidance} if job.counts else {}),
            },
            "filter": {
                "dropped": dropped,
                "thresholds": _thresholds(references, names),
                "class": classifier.describe(names) if classifier is not None else None,
            },
            "weight": export.weight_note(),
            "images": manifest_images,
        },
    )
    export.write_metadata(folder, metadata_rows)
    name = dataset_name
    zip_path = export.write_zip(folder, work / "zip" / f"{name}-{job.pk}.zip", arc_prefix=name)
    folder_relative = f"{storage.job_prefix(job.pk)}/images"
    zip_relative = f"{storage.job_prefix(job.pk)}/{zip_path.name}"
    for path in [*gallery_files(folder), folder / "manifest.json", folder / export.METADATA]:  # the zip holds them all
        storage.publish_file(path, f"{folder_relative}/{path.relative_to(folder).as_posix()}")
    storage.publish_file(zip_path, zip_relative)
    return produced, folder_relative, zip_relative


def _thresholds(references: dict | None, names: list[str]) -> dict | None:
    """The manifest's ``filter.thresholds``: None with the filter off."""
    if not references:
        return None
    if None in references:
        return references[None].thresholds()
    return filtering.class_thresholds(references, names)


def delete_job(*, job: GenerationJob) -> None:
    storage.remove_prefix(storage.job_prefix(job.pk))
    job.delete()
