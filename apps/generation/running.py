"""Running one generation job in a local work folder: sample its images chunk by chunk (filtered unless turned
off; a conditional job class by class), write them as PNGs with manifest.json and metadata.jsonl, zip them, and
store the page's gallery, the manifest, the metadata and the zip."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from django.utils.text import slugify

from apps.core import storage
from apps.ml.engine.base import GeneratorType
from apps.ml.quality import filtering
from apps.ml.quality.class_filter import ClassFilter

from . import export, loading
from .loading import References
from .models import GenerationJob

CHUNK = 500  # images sampled (and progress recorded) at a time


@dataclass(frozen=True)
class Produced:
    """A finished job's output: how many images passed, and where the images' folder and the zip are stored."""

    count: int
    folder: str
    archive: str


def produce(job: GenerationJob, work: Path) -> Produced:
    """Sample, filter and write the job's images in the local folder ``work``, zip them, store both."""
    generator = job.generator
    storage.remove_prefix(storage.job_prefix(job.pk))  # a job delivered again starts its files over
    version = generator.updated_at.isoformat()
    model = loading.load_model(generator.pk, generator.kind, generator.files_dir, version)
    references = (
        loading.filter_references(generator.pk, generator.files_dir, version, len(generator.classes))
        if job.filter_images
        else None
    )
    sampling = _Sampling(
        job=job,
        model=model,
        references=references,
        # Conditional generators: every image is scored by the class filter; with the filter on, images it
        # does not recognise as their class are dropped and replaced.
        classifier=loading.class_filter(generator),
        folder=work / storage.JOB_IMAGES,
        dataset_name=slugify(generator.name) or "images",
    )
    names = [c["name"] for c in generator.classes]
    # (class index, class name or None, images): one part for a one-class job, a part per class otherwise.
    parts: list[tuple[int | None, str | None, int]] = [
        (names.index(name), name, n) for name, n in job.counts.items() if n
    ] or [(None, None, job.count)]
    for label, class_name, count in parts:
        sampling.sample_part(label, class_name, count)
    return _package(sampling, _manifest(sampling, version, names), work)


def _package(sampling: _Sampling, manifest: dict[str, Any], work: Path) -> Produced:
    """Write manifest.json and metadata.jsonl next to the images, zip them all, and store the zip, the manifest,
    the metadata and the images of the job's page."""
    job, folder = sampling.job, sampling.folder
    written = [export.write_manifest(folder, manifest), export.write_metadata(folder, sampling.metadata_rows)]
    zip_path = export.write_zip(
        folder,
        work / storage.JOB_WORK_ZIP / storage.job_zip_name(sampling.dataset_name, job.pk),
        arc_prefix=sampling.dataset_name,
    )
    stored_folder = storage.job_file(job.pk, storage.JOB_IMAGES)
    for path in [*export.gallery_files(folder), *written]:  # the zip holds them all
        storage.publish_file(path, f"{stored_folder}/{path.relative_to(folder).as_posix()}")
    archive = storage.job_file(job.pk, zip_path.name)
    storage.publish_file(zip_path, archive)
    return Produced(count=sampling.produced, folder=stored_folder, archive=archive)


@dataclass
class _Sampling:
    """A job's sampling under way: what it samples and filters with, where it writes, and what it has made."""

    job: GenerationJob
    model: GeneratorType
    references: References | None
    classifier: ClassFilter | None
    folder: Path
    dataset_name: str  # the zip's folder, and the label of a one-class job's images
    manifest_images: list[dict[str, Any]] = field(default_factory=list)
    metadata_rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=lambda: {"noise": 0, "blank": 0, "copy": 0, "class": 0})
    produced: int = 0
    chunks: int = 0  # chunks sampled so far: each chunk's place gives it its own seeds

    def sample_part(self, label: int | None, class_name: str | None, count: int) -> None:
        """Sample ``count`` images of the class ``label`` (None: a one-class job's images), a chunk at a time,
        into the class's folder (a one-class job: the folder itself), recording the job's progress."""
        job, classifier = self.job, self.classifier
        reference = self.references[label] if self.references else None
        by_class: dict[str, Any] = {"labels": label, "guidance": job.guidance} if label is not None else {}

        def sample(n: int, seed: int) -> torch.Tensor:
            return self.model.sample(n, seed=seed, steps=job.steps, **by_class)

        check = partial(classifier.check, labels=label) if classifier is not None and label is not None else None
        target, written = (self.folder / class_name, 0) if class_name else (self.folder, self.produced)
        for start in range(0, count, CHUNK):
            batch = filtering.generate_filtered(
                sample,
                min(CHUNK, count - start),
                reference,
                seed=job.seed,
                chunk=self.chunks,
                class_check=check,
            )
            self.chunks += 1
            files = export.write_pngs(batch.images, target, written)
            self._record(batch, [f"{class_name}/{name}" if class_name else name for name in files], class_name)
            written += len(files)
            GenerationJob.objects.filter(pk=job.pk).update(produced=self.produced, dropped=sum(self.dropped.values()))

    def _record(self, batch: filtering.FilteredBatch, files: list[str], class_name: str | None) -> None:
        """The manifest's and metadata.jsonl's entries of a chunk's images (``files``: under the job's folder)."""
        in_class = {"class": class_name} if class_name else {}
        self.manifest_images += [
            {"file": name, **in_class, "score": None, **scores} for name, scores in zip(files, batch.scores)
        ]
        self.metadata_rows += [
            export.metadata_row(name, class_name or self.dataset_name, scores.get("score"))
            for name, scores in zip(files, batch.scores)
        ]
        self.produced += len(files)
        for reason, n in batch.dropped.items():
            self.dropped[reason] += n


def _manifest(sampling: _Sampling, version: str, names: list[str]) -> dict[str, Any]:
    """manifest.json: the generator and the job, what the filter dropped and by which limits, every image."""
    job, generator, classifier = sampling.job, sampling.job.generator, sampling.classifier
    return {
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
            "produced": sampling.produced,
            "seed": job.seed,
            "steps": job.steps,
            "filtered": sampling.references is not None,
            **({"counts": job.counts, "guidance": job.guidance} if job.counts else {}),
        },
        "filter": {
            "dropped": sampling.dropped,
            "thresholds": _thresholds(sampling.references, names),
            "class": classifier.describe(names) if classifier is not None else None,
        },
        "weight": export.weight_note(),
        "images": sampling.manifest_images,
    }


def _thresholds(references: References | None, names: list[str]) -> dict[str, Any] | None:
    """The manifest's ``filter.thresholds``: None with the filter off."""
    if not references:
        return None
    if None in references:
        return references[None].thresholds()
    return filtering.class_thresholds({label: ref for label, ref in references.items() if label is not None}, names)
