"""The train stage: the config the run trains with, the training itself, and its progress on the run page.

Training publishes each checkpoint to storage, so a train stage delivered again on another host resumes from the
last one; a worker that is stopping stops at its next step (shutdown.py), a cancelled run at its next second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.core import storage
from apps.ml.engine import registry
from apps.ml.engine.base import TrainProgress
from apps.ml.engine.checkpoint import load_tensors
from apps.ml.engine.config import build_config
from apps.ml.engine.device import pick_device
from apps.ml.engine.trainer import checkpoint_step
from apps.ml.engine.transfer import read_base, start_from

from .. import estimates, shutdown, transfer
from ..models import Generator, TrainingRun
from ..runs import StageSkipped, run_stage
from ..services import mark_cancelled
from .handoff import fetch_run_files

MAX_LOSS_POINTS = 400


def train(run_id: int) -> bool:
    return run_stage(run_id, "train", _train)


class _ProgressRecorder:
    """Writes training progress to the run at most once a second (and at every checkpoint)."""

    def __init__(self, run: TrainingRun, checkpoint_dir: Path | None = None, interval: float = 1.0):
        self.run_id = run.pk
        self.checkpoint_dir = checkpoint_dir
        self.generator_id = run.generator_id
        self.interval = interval
        self.last_write = 0.0
        self.last_stop_check = 0.0
        self.interrupted = False  # stopped because the worker is stopping, not cancelled
        self.losses = list(run.losses)
        self.warnings = list(run.warnings)

    def __call__(self, progress: TrainProgress) -> None:
        # After a resume, steps past the last checkpoint are trained again: drop their old points.
        while self.losses and self.losses[-1]["step"] >= progress.step:
            self.losses.pop()
        self.losses.append({"step": progress.step, **{k: round(float(v), 5) for k, v in progress.losses.items()}})
        if len(self.losses) > MAX_LOSS_POINTS:
            self.losses = self.losses[::2]
        for warning in progress.warnings:
            if warning not in self.warnings:
                self.warnings.append(warning)
        now = time.monotonic()
        if not progress.checkpointed and progress.sample_grid is None and now - self.last_write < self.interval:
            return
        self.last_write = now
        fields = {
            "step": progress.step,
            "total_steps": progress.total_steps,
            "losses": self.losses,
            "warnings": self.warnings,
            "heartbeat_at": timezone.now(),
        }
        if progress.checkpointed and self.checkpoint_dir is not None:
            # The checkpoint the trainer just wrote, to storage: a train stage delivered again anywhere resumes here.
            _publish_checkpoint(self.run_id, self.checkpoint_dir)
        if progress.sample_grid is not None:
            fields["latest_grid"] = _publish_grid(self.generator_id, Path(progress.sample_grid))
        TrainingRun.objects.filter(pk=self.run_id).update(**fields)

    def should_stop(self) -> bool:
        """Called every step: at once when the worker is stopping (shutdown.py); once a second, beat the
        heartbeat and read the cancel flag (a run deleted with its generator stops too)."""
        if shutdown.requested():
            self.interrupted = True
            return True
        now = time.monotonic()
        if now - self.last_stop_check < 1.0:
            return False
        self.last_stop_check = now
        TrainingRun.objects.filter(pk=self.run_id).update(heartbeat_at=timezone.now())
        # cancelled, or deleted with its generator (runs.run_stage then removes what was stored)
        return not TrainingRun.objects.filter(pk=self.run_id, cancel_requested=False).exists()


def _publish_grid(generator_id: int, grid: Path) -> str:
    """Store a training grid where the web pages can show it; returns its name in storage."""
    return storage.publish_file(grid, storage.generator_file(generator_id, storage.GENERATOR_PROGRESS_GRID))


def _publish_checkpoint(run_id: int, checkpoint_dir: Path) -> None:
    """The checkpoint files (not the sample grids) under runs/<id>/checkpoints/."""
    for path in sorted(checkpoint_dir.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            storage.publish_file(path, storage.run_file(run_id, f"{storage.RUN_CHECKPOINTS}/{path.name}"))


def _config(generator: Generator, prepared: dict[str, Any], device: str, base_recipe: dict | None) -> dict:
    """The config the run trains with. A resumed run keeps the config it started with; a new one gets the preset's
    recipe for this data and device, then the operator's overrides, then the user's options, each checked
    (ConfigError)."""
    return generator.config or build_config(
        registry.get(generator.kind),
        resolution=generator.resolution,
        channels=generator.channels,
        preset=generator.preset,
        # The recipe follows the number of distinct photos, not photos plus their augmented copies.
        image_count=len(prepared["images"]),
        device=device,
        overrides=settings.SYNTHGEN_TRAINING_OVERRIDES.get(generator.kind, {}),
        options=generator.options,
        classes=[c["name"] for c in generator.classes] or None,
        # The training length follows the shortest class's photos (the ones the model trains on).
        class_counts=prepared["labels"].bincount(minlength=len(generator.classes)).tolist()
        if generator.classes
        else None,
        orientation=generator.orientation or None,
        # Fine-tuning: the base's model shape and the fine-tuning recipe, before the user's options.
        base=base_recipe,
    )


def _train(run: TrainingRun, work: Path) -> None:
    generator = run.generator
    fetch_run_files(run, work, storage.RUN_TRAINING, storage.RUN_PREPARED)
    # The last checkpoint, wherever it was written: training resumes from it.
    storage.fetch(storage.run_file(run.pk, storage.RUN_CHECKPOINTS), work / storage.RUN_CHECKPOINTS)
    training = load_tensors(work / storage.RUN_TRAINING)
    images, labels = training["images"].float().div(127.5).sub(1.0), training.get("labels")
    # Fine-tuning: the copy of the base's files made when the generator was asked for (transfer.snapshot_base).
    base = None
    if (snapshot := transfer.base_snapshot(run.pk)) is not None:
        base = read_base(storage.fetch(snapshot, work / storage.RUN_BASE))
    elif generator.base_name and not generator.config:  # never start a "fine-tuned" run from random weights
        raise RuntimeError(f"the copy of the base generator '{generator.base_name}' this run starts from is missing")
    device = pick_device()
    prepared = load_tensors(work / storage.RUN_PREPARED)
    config = _config(generator, prepared, device, base.recipe_config() if base is not None else None)
    Generator.objects.filter(pk=generator.pk).update(config=config)
    run.refresh_from_db()
    TrainingRun.objects.filter(pk=run.pk).update(
        device=device,
        total_steps=config["total_steps"],
        # The step training resumes from: its checkpoint's (the run's last reported step may be later).
        resumed_step=checkpoint_step(work / storage.RUN_CHECKPOINTS),
        train_started_at=timezone.now(),
    )
    estimates.store_run_estimate(run.pk, generator.kind, config, device)  # the time expected, for the run page
    recorder = _ProgressRecorder(run, checkpoint_dir=work / storage.RUN_CHECKPOINTS)
    model = registry.get(generator.kind)(config, device=device)
    if base is not None:  # the networks start from the base's weights (a checkpoint, when resuming, over them)
        start_from(model, base)
    result = model.train(
        images,
        labels=labels,
        checkpoint_dir=work / storage.RUN_CHECKPOINTS,
        on_progress=recorder,
        should_stop=recorder.should_stop,
    )
    if result.stopped_early:
        if recorder.interrupted:  # the worker is stopping: the last checkpoint is published, the task is re-queued
            raise shutdown.StageInterrupted()
        cancelled = TrainingRun.objects.filter(pk=run.pk).first()
        if cancelled is not None:  # None: deleted with its generator
            mark_cancelled(run=cancelled)
        raise StageSkipped()
    model.save(work / storage.RUN_FINAL)
    storage.publish(work / storage.RUN_FINAL, storage.run_file(run.pk, storage.RUN_FINAL))
    TrainingRun.objects.filter(pk=run.pk).update(
        step=result.steps,
        warnings=sorted(set(recorder.warnings) | set(result.warnings)),
        train_seconds=round(result.seconds, 1),
    )
