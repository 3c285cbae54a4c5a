"""The evaluate stage: the trained model's quality report (evaluation.py) and its closest copies, for register."""

from __future__ import annotations

from pathlib import Path

from apps.core import storage
from apps.ml.engine.checkpoint import load_tensors, save_json_atomic

from .. import evaluation
from ..models import Generator, TrainingRun
from ..runs import run_stage
from .handoff import fetch_run_files, publish_run_files


def evaluate(run_id: int) -> bool:
    return run_stage(run_id, "evaluate", _evaluate)


def _evaluate(run: TrainingRun, work: Path) -> None:
    augmented_file = [storage.RUN_TRAINING] if run.generator.augment else []
    fetch_run_files(run, work, storage.RUN_PREPARED, storage.RUN_HELDOUT, *augmented_file)
    storage.fetch(storage.run_file(run.pk, storage.RUN_FINAL), work / storage.RUN_FINAL)
    prepared, heldout = load_tensors(work / storage.RUN_PREPARED), load_tensors(work / storage.RUN_HELDOUT)
    augmented = load_tensors(work / storage.RUN_TRAINING) if run.generator.augment else None
    copies_grid = work / storage.RUN_COPIES_GRID
    common = dict(
        generator=run.generator,
        model_dir=work / storage.RUN_FINAL,
        train=prepared["images"],
        heldout=heldout["images"],
        copies_grid=copies_grid,
        augmented=augmented["images"] if augmented is not None else None,
    )
    if run.generator.classes:  # a conditional generator: a report per class, and one for the whole dataset
        labels = (prepared["labels"], heldout["labels"], augmented["labels"] if augmented is not None else None)
        report = evaluation.evaluate_by_class(**common, labels=labels)
        # The guidance scale chosen on the training photos is now in the model's config: store it.
        storage.publish(work / storage.RUN_FINAL, storage.run_file(run.pk, storage.RUN_FINAL))
        config = {**run.generator.config, "guidance_scale": report["guidance"]["guidance"]}
        Generator.objects.filter(pk=run.generator_id).update(config=config)
    else:
        report = evaluation.evaluate(**common)
    save_json_atomic(report, work / storage.RUN_QUALITY)
    publish_run_files(run, work, storage.RUN_QUALITY, *([storage.RUN_COPIES_GRID] if copies_grid.exists() else []))
