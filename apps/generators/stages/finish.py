"""The stages that finish a run: register (the trained model, its real images and grids into the generator's
folder; only then is the generator ready) and cleanup (the run's files removed)."""

from __future__ import annotations

from pathlib import Path

import torch
from django.utils import timezone

from apps.core import storage
from apps.ml.engine import registry
from apps.ml.engine.checkpoint import load_json
from apps.ml.engine.device import pick_device
from apps.ml.engine.images import save_grid

from ..models import Generator, TrainingRun
from ..runs import run_stage
from .handoff import fetch_run_files

SAMPLE_GRID_SEED = 0
SAMPLE_GRID_COUNT = 64


def register(run_id: int) -> bool:
    return run_stage(run_id, "register", _register)


def _register(run: TrainingRun, work: Path) -> None:
    """Copy the trained model into the registry and make its sample grid; only then is it ready."""
    generator = run.generator
    files_dir = storage.generator_prefix(generator.pk)
    # The generator's folder, as it will be stored: the model, its real images, its grids.
    target = storage.fetch(storage.run_file(run.pk, storage.RUN_FINAL), work / storage.RUN_FINAL)
    copies = {
        storage.RUN_PREPARED: storage.GENERATOR_REFERENCE,  # the reference for filtering at generation
        storage.RUN_HELDOUT: storage.GENERATOR_HELDOUT,
        # Copies of augmented images count as copies at generation too.
        **({storage.RUN_TRAINING: storage.GENERATOR_AUGMENTED} if generator.augment else {}),
    }
    if storage.exists(storage.run_file(run.pk, storage.RUN_COPIES_GRID)):
        copies[storage.RUN_COPIES_GRID] = storage.GENERATOR_COPIES_GRID
    for name, copy in copies.items():
        storage.fetch_file(storage.run_file(run.pk, name), target / copy)
    fetch_run_files(run, work, storage.RUN_QUALITY)
    quality = load_json(work / storage.RUN_QUALITY)
    model = registry.get(generator.kind).load(target, device=pick_device())
    # A conditional generator's grid runs through its classes, a row or so each.
    by_class = {"labels": torch.arange(SAMPLE_GRID_COUNT) % len(generator.classes)} if generator.classes else {}
    samples = model.sample(SAMPLE_GRID_COUNT, seed=SAMPLE_GRID_SEED, **by_class)
    save_grid(samples, target / storage.GENERATOR_SAMPLE_GRID, columns=8)
    storage.publish(target, files_dir)
    warnings = TrainingRun.objects.values_list("warnings", flat=True).get(pk=run.pk)
    Generator.objects.filter(pk=generator.pk).update(
        files_dir=files_dir,
        sample_grid=storage.generator_file(generator.pk, storage.GENERATOR_SAMPLE_GRID),
        warnings=warnings,
        quality=quality,
        status=Generator.Status.READY,
    )


def cleanup(run_id: int) -> bool:
    done = run_stage(run_id, "cleanup", _cleanup)
    if done:
        TrainingRun.objects.filter(pk=run_id).update(
            status=TrainingRun.Status.DONE, stage="done", finished_at=timezone.now()
        )
    return done


def _cleanup(run: TrainingRun, work: Path) -> None:
    """Remove the run's files (runs/<id>/) and the training grid; the dataset's uploads stay with the dataset."""
    storage.remove_prefix(storage.run_prefix(run.pk))
    storage.delete(storage.generator_file(run.generator_id, storage.GENERATOR_PROGRESS_GRID))
    samples = storage.generator_file(run.generator_id, storage.GENERATOR_SAMPLE_GRID)
    TrainingRun.objects.filter(pk=run.pk).update(latest_grid=samples)
