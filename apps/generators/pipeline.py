"""The training pipeline's stages: prepare -> augment -> train -> evaluate -> register -> cleanup.

Each stage takes a run id, is idempotent (a finished stage is skipped when delivered again),
records its stage in the database, and marks the run failed, with the error, when it raises.
The Celery tasks in tasks.py only call these functions.

Any stage runs on any host: it fetches its inputs from storage (apps/core/storage.py) into a local
scratch folder, removed when it ends, and publishes its outputs under the run's prefix (runs/<id>/).
Training publishes each checkpoint, so a train stage delivered again on another host resumes from
the last one. Storage that cannot be reached raises StorageUnavailable: the stage gives its lease
back and the task retries it (tasks.py); only when the retries run out does the run fail.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from PIL import Image

from apps.core import storage
from apps.core.storage import StorageUnavailable
from apps.datasets.imaging import dataset_channels, stack_training_tensor
from apps.ml.engine import registry
from apps.ml.engine.augment import augment_dataset, augmentation_copies
from apps.ml.engine.base import TrainProgress
from apps.ml.engine.checkpoint import load_json, load_tensors, save_json_atomic, save_tensors_atomic
from apps.ml.engine.config import build_config
from apps.ml.engine.device import pick_device
from apps.ml.engine.images import save_grid
from apps.ml.engine.orientation import measure as measure_orientation
from apps.ml.engine.transfer import read_base, start_from

from . import estimates, evaluation, shutdown, transfer
from .models import Generator, TrainingRun
from .services import generator_files_dir, mark_cancelled
from .stages import STAGE_ORDER

log = logging.getLogger(__name__)

PREPARED = "prepared.safetensors"  # uint8 [N,C,H,W]: the training part of the dataset at the model's resolution
HELDOUT = "heldout.safetensors"  # uint8 [N,C,H,W]: real images kept out of training, for the quality report
QUALITY = "quality.json"  # the quality report, from evaluate to register
COPIES_GRID = "copies.png"  # the closest generated/training pairs side by side
TRAINING = "training.safetensors"  # uint8 [N,C,H,W]: prepared + augmented copies
FINAL = "final"  # the trained model as GeneratorType.save wrote it
CHECKPOINTS = "checkpoints"
MAX_LOSS_POINTS = 400
MAX_STAGE_ATTEMPTS = 3


class StageSkipped(Exception):
    """The run is no longer active (cancelled or failed): later stages do nothing."""


def stale_after() -> float:
    """Seconds without a heartbeat after which a running stage counts as abandoned (its worker died)."""
    return float(settings.SYNTHGEN_STALE_RUN_SECONDS)


_PROCESS = uuid.uuid4().hex[:8]  # tells this process from an earlier one that had the same pid


def lease_holder() -> str:
    """Who holds a stage: "host:pid:token" of this worker process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_PROCESS}"


def holder_gone(holder: str) -> bool:
    """True when the holder ran on this host and its process no longer exists (a worker restarted here).

    Other hosts' processes cannot be seen from here: for them only the stale heartbeat tells.
    """
    host, pid, process = (holder.split(":") + ["", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return process != _PROCESS  # an earlier process that had this pid (e.g. a restarted container)
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


def run_stage(run_id: int, stage: str, body: Callable[[TrainingRun, Path], None]) -> bool:
    """Run one stage once. Returns False when it was skipped.

    Skipped when: the run is no longer active; the stage is already done (a task delivered twice);
    an earlier stage is not done (a leftover message of a chain that stopped); or another worker
    holds the stage (same stage, fresh heartbeat, holder not known dead). A stage whose worker died
    (stale heartbeat, or a holder process on this host that is gone) is taken over and, for training,
    resumes from its last checkpoint.
    """
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("generator").get(pk=run_id)
        if not run.is_active or stage in run.completed_stages:
            return False
        missing = [s for s in STAGE_ORDER[: STAGE_ORDER.index(stage)] if s not in run.completed_stages]
        if missing:
            log.info("run %s: skipping %s, earlier stages not done: %s", run_id, stage, missing)
            return False
        now = timezone.now()
        fresh = run.heartbeat_at and (now - run.heartbeat_at).total_seconds() < stale_after()
        if run.stage == stage and fresh and not holder_gone(run.holder):
            log.info("run %s: %s is held by another worker", run_id, stage)
            return False
        if run.cancel_requested:
            mark_cancelled(run=run)
            return False
        run.attempts = run.attempts + 1 if run.stage == stage else 1
        if run.attempts > MAX_STAGE_ATTEMPTS:
            message = (
                f"The {stage} stage was started {MAX_STAGE_ATTEMPTS} times and its worker stopped each "
                "time (out of memory?). Try a smaller image size or preset."
            )
            run.save(update_fields=["attempts"])
            transaction.on_commit(lambda: fail_run(run_id=run_id, stage=stage, message=message))
            return False
        run.status = TrainingRun.Status.RUNNING
        run.stage = stage
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.holder = lease_holder()
        run.requeued_at = None  # a re-queued run has been picked up: the sweeper may re-queue it again
        run.save(
            update_fields=[
                "status",
                "stage",
                "attempts",
                "started_at",
                "heartbeat_at",
                "holder",
                "requeued_at",
                "updated_at",
            ]
        )
        if run.generator.status == Generator.Status.QUEUED:
            Generator.objects.filter(pk=run.generator_id).update(status=Generator.Status.TRAINING)
    try:
        with storage.scratch(f"run{run_id}-{stage}") as work:
            body(run, work)
    except StageSkipped:
        return False
    except shutdown.StageInterrupted:
        # The worker is stopping (SIGINT/SIGTERM) and the stage stopped at a checkpoint: neither cancelled nor
        # failed. Give the lease and the attempt back, so that the next worker takes the stage over at once.
        log.warning(
            "run %s: the worker is stopping; %s goes back to the queue and resumes from its checkpoint", run_id, stage
        )
        _release_lease(run_id, stage, run.holder)
        raise
    except StorageUnavailable:
        # Not the stage's fault: give the lease back (and the attempt) so that the task's retry, on this
        # worker or another, starts the stage again at once. tasks.py fails the run when retries run out.
        log.warning("run %s: storage unavailable in stage %s; the task will retry", run_id, stage)
        TrainingRun.objects.filter(pk=run_id, stage=stage, holder=run.holder).update(
            heartbeat_at=None, attempts=models.F("attempts") - 1
        )
        raise
    except Exception as exc:
        if shutdown.requested():  # raised into the stage by the worker's shutdown (e.g. Celery's cold shutdown)
            log.warning(
                "run %s: %s stopped while the worker was stopping (%s); it goes back to the queue", run_id, stage, exc
            )
            _release_lease(run_id, stage, run.holder)
            raise shutdown.StageInterrupted() from exc
        log.exception("run %s failed in stage %s", run_id, stage)
        fail_run(run_id=run_id, stage=stage, message=_user_message(stage, exc))
        raise
    run.refresh_from_db()
    if stage not in run.completed_stages:
        run.completed_stages = [*run.completed_stages, stage]
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["completed_stages", "heartbeat_at", "updated_at"])
    return True


def _release_lease(run_id: int, stage: str, holder: str) -> None:
    """A stage that stopped because its worker is stopping: the attempt does not count, and its heartbeat reads as
    stale, so any worker takes the stage over at once, and any sweep re-queues it if its message were lost."""
    TrainingRun.objects.filter(pk=run_id, stage=stage, holder=holder).update(
        heartbeat_at=timezone.now() - timezone.timedelta(seconds=stale_after() + 1), attempts=models.F("attempts") - 1
    )


def sweep_stale_runs() -> list[int]:
    """Re-queue runs whose worker died or whose queued message was lost (e.g. a broker restart).

    A worker died when its heartbeat is stale or, on this host, at once when its process is gone
    (a worker restarted here: the start-up sweep takes its stages over without waiting).
    Every stage is idempotent, so re-queuing a run that is in fact still queued or running costs
    nothing: the duplicate tasks skip. Returns the ids of the runs re-queued.
    """
    from .tasks import launch_pipeline

    now = timezone.now()
    cutoff = now - timezone.timedelta(seconds=stale_after())
    here = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, holder__startswith=f"{socket.gethostname()}:")
    orphaned = models.Q(pk__in=[pk for pk, holder in here.values_list("pk", "holder") if holder_gone(holder)])
    abandoned = models.Q(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff)
    lost = models.Q(status=TrainingRun.Status.QUEUED, created_at__lt=cutoff)
    not_just_requeued = models.Q(requeued_at__isnull=True) | models.Q(requeued_at__lt=cutoff)
    requeued = []
    runs = TrainingRun.objects.filter((orphaned | abandoned | lost) & not_just_requeued)
    for run_id in runs.values_list("pk", flat=True):
        TrainingRun.objects.filter(pk=run_id).update(requeued_at=now)
        launch_pipeline(run_id)
        requeued.append(run_id)
    if requeued:
        log.warning("re-queued stale training runs: %s", requeued)
    return requeued


def _user_message(stage: str, exc: Exception) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return f"The {stage} stage failed: {last}"


def fail_run(*, run_id: int, stage: str, message: str) -> None:
    TrainingRun.objects.filter(pk=run_id).update(
        status=TrainingRun.Status.FAILED, stage=stage, error=message, finished_at=timezone.now()
    )
    generator_id = TrainingRun.objects.values_list("generator_id", flat=True).get(pk=run_id)
    Generator.objects.filter(pk=generator_id).update(status=Generator.Status.FAILED)


# --- prepare -----------------------------------------------------------------------------------


def prepare(run_id: int) -> bool:
    return run_stage(run_id, "prepare", _prepare)


def _prepare(run: TrainingRun, work: Path) -> None:
    generator = run.generator
    if generator.dataset is None:
        raise ValueError("the dataset was deleted before training started; upload it again")
    images = list(generator.dataset.images.all())
    channels = dataset_channels([image.mode for image in images])
    pictures = []
    for data in storage.read_many(image.working.name for image in images):
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            pictures.append(picture)
    tensor = stack_training_tensor(pictures, generator.resolution, channels)
    classes = []
    if generator.dataset.labelled:  # one model learns every class: the labels travel with the images
        names = sorted({image.label for image in images})
        labels = torch.tensor([names.index(image.label) for image in images])
        train_part, train_labels, heldout, held_labels = evaluation.split_heldout_by_class(tensor, labels, seed=run.pk)
        save_tensors_atomic({"images": train_part, "labels": train_labels}, work / PREPARED)
        save_tensors_atomic({"images": heldout, "labels": held_labels}, work / HELDOUT)
        classes = [{"name": name, "image_count": int((labels == i).sum())} for i, name in enumerate(names)]
    else:
        train_part, heldout = evaluation.split_heldout(tensor, seed=run.pk)
        train_labels = None
        save_tensors_atomic({"images": train_part}, work / PREPARED)
        save_tensors_atomic({"images": heldout}, work / HELDOUT)
    # Which way the training photos face: the augment stage, the recipe and the report follow it.
    found = measure_orientation(train_part, train_labels, [c["name"] for c in classes] or None)
    _publish(run, work, PREPARED, HELDOUT)
    Generator.objects.filter(pk=generator.pk).update(channels=channels, classes=classes, orientation=found.as_dict())
    TrainingRun.objects.filter(pk=run.pk).update(image_count=len(train_part))


# --- augment -----------------------------------------------------------------------------------


def augment(run_id: int) -> bool:
    return run_stage(run_id, "augment", _augment)


def _augment(run: TrainingRun, work: Path) -> None:
    _fetch(run, work, PREPARED)
    prepared = load_tensors(work / PREPARED)
    images, labels = prepared["images"], prepared.get("labels")
    if run.generator.augment:
        copies = augmentation_copies(len(images))
        found = run.generator.orientation  # mirror images and turns only where the photos show them
        images = augment_dataset(
            images,
            copies=copies,
            seed=run.pk,
            mirror=bool(found.get("mirrors")),
            quarter_turns=bool(found.get("rotations")),
        )
        labels = labels.repeat(1 + copies) if labels is not None else None  # copy k of image i keeps its class
    save_tensors_atomic({"images": images, **({"labels": labels} if labels is not None else {})}, work / TRAINING)
    _publish(run, work, TRAINING)
    TrainingRun.objects.filter(pk=run.pk).update(image_count=len(images))


# --- train -------------------------------------------------------------------------------------


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
        heartbeat and read the cancel flag."""
        if shutdown.requested():
            self.interrupted = True
            return True
        now = time.monotonic()
        if now - self.last_stop_check < 1.0:
            return False
        self.last_stop_check = now
        TrainingRun.objects.filter(pk=self.run_id).update(heartbeat_at=timezone.now())
        return TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()


def _publish_grid(generator_id: int, grid: Path) -> str:
    """Store a training grid where the web pages can show it; returns its name in storage."""
    return storage.publish_file(grid, storage.generator_file(generator_id, "progress.png"))


def _publish_checkpoint(run_id: int, checkpoint_dir: Path) -> None:
    """The checkpoint files (not the sample grids) under runs/<id>/checkpoints/."""
    for path in sorted(checkpoint_dir.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            storage.publish_file(path, storage.run_file(run_id, f"{CHECKPOINTS}/{path.name}"))


def _fetch(run: TrainingRun, work: Path, *names: str) -> None:
    """The run's files ``names`` from storage into ``work``."""
    for name in names:
        storage.fetch_file(storage.run_file(run.pk, name), work / name)


def _publish(run: TrainingRun, work: Path, *names: str) -> None:
    """The files ``names`` of ``work`` to the run's prefix in storage."""
    for name in names:
        storage.publish_file(work / name, storage.run_file(run.pk, name))


def _train(run: TrainingRun, work: Path) -> None:
    generator = run.generator
    _fetch(run, work, TRAINING, PREPARED)
    # The last checkpoint, wherever it was written: training resumes from it.
    storage.fetch(storage.run_file(run.pk, CHECKPOINTS), work / CHECKPOINTS)
    training = load_tensors(work / TRAINING)
    images, labels = training["images"].float().div(127.5).sub(1.0), training.get("labels")
    # Fine-tuning: the copy of the base's files made when the generator was asked for (transfer.snapshot_base).
    base = None
    if (snapshot := transfer.base_snapshot(run.pk)) is not None:
        base = read_base(storage.fetch(snapshot, work / transfer.BASE_DIR))
    elif generator.base_name and not generator.config:  # never start a "fine-tuned" run from random weights
        raise RuntimeError(f"the copy of the base generator '{generator.base_name}' this run starts from is missing")
    generator_type = registry.get(generator.kind)
    device = pick_device()
    # A resumed run keeps the config it started with; a new one gets the preset's recipe for this data
    # and device, then the operator's overrides, then the user's options, each checked (ConfigError).
    prepared = load_tensors(work / PREPARED)
    config = generator.config or build_config(
        generator_type,
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
        base=base.recipe_config() if base is not None else None,
    )
    Generator.objects.filter(pk=generator.pk).update(config=config)
    run.refresh_from_db()
    TrainingRun.objects.filter(pk=run.pk).update(
        device=device,
        total_steps=config["total_steps"],
        resumed_step=run.step,
        train_started_at=timezone.now(),
    )
    estimates.store_run_estimate(
        run.pk, generator.kind, config, device
    )  # the time expected, for the run page's comparison
    recorder = _ProgressRecorder(run, checkpoint_dir=work / CHECKPOINTS)
    model = generator_type(config, device=device)
    if base is not None:  # the networks start from the base's weights (a checkpoint, when resuming, over them)
        start_from(model, base)
    result = model.train(
        images, labels=labels, checkpoint_dir=work / CHECKPOINTS, on_progress=recorder, should_stop=recorder.should_stop
    )
    if result.stopped_early:
        if recorder.interrupted:  # the worker is stopping: the last checkpoint is published, the task is re-queued
            raise shutdown.StageInterrupted()
        mark_cancelled(run=TrainingRun.objects.get(pk=run.pk))
        raise StageSkipped()
    model.save(work / FINAL)
    storage.publish(work / FINAL, storage.run_file(run.pk, FINAL))
    TrainingRun.objects.filter(pk=run.pk).update(
        step=result.steps,
        warnings=sorted(set(recorder.warnings) | set(result.warnings)),
        train_seconds=round(result.seconds, 1),
    )


# --- evaluate ----------------------------------------------------------------------------------


def evaluate(run_id: int) -> bool:
    return run_stage(run_id, "evaluate", _evaluate)


def _evaluate(run: TrainingRun, work: Path) -> None:
    _fetch(run, work, PREPARED, HELDOUT, *([TRAINING] if run.generator.augment else []))
    storage.fetch(storage.run_file(run.pk, FINAL), work / FINAL)
    prepared, heldout = load_tensors(work / PREPARED), load_tensors(work / HELDOUT)
    augmented = load_tensors(work / TRAINING) if run.generator.augment else None
    common = dict(
        generator=run.generator,
        model_dir=work / FINAL,
        train=prepared["images"],
        heldout=heldout["images"],
        copies_grid=work / COPIES_GRID,
        augmented=augmented["images"] if augmented is not None else None,
    )
    if run.generator.classes:  # a conditional generator: a report per class, and one for the whole dataset
        labels = (prepared["labels"], heldout["labels"], augmented["labels"] if augmented is not None else None)
        report = evaluation.evaluate_by_class(**common, labels=labels)
        # The guidance scale chosen on the training photos is now in the model's config: store it.
        storage.publish(work / FINAL, storage.run_file(run.pk, FINAL))
        config = {**run.generator.config, "guidance_scale": report["guidance"]["guidance"]}
        Generator.objects.filter(pk=run.generator_id).update(config=config)
    else:
        report = evaluation.evaluate(**common)
    save_json_atomic(report, work / QUALITY)
    _publish(run, work, QUALITY, *([COPIES_GRID] if (work / COPIES_GRID).exists() else []))


# --- register ----------------------------------------------------------------------------------


def register(run_id: int) -> bool:
    return run_stage(run_id, "register", _register)


SAMPLE_GRID_SEED = 0
SAMPLE_GRID_COUNT = 64


def _register(run: TrainingRun, work: Path) -> None:
    """Copy the trained model into the registry and make its sample grid; only then is it ready."""
    generator = run.generator
    files_dir = generator_files_dir(generator.pk)
    # The generator's folder, as it will be stored: the model, its real images, its grids.
    target = storage.fetch(storage.run_file(run.pk, FINAL), work / "generator")
    # The real images at the model's resolution: the reference for filtering at generation.
    storage.fetch_file(storage.run_file(run.pk, PREPARED), target / "reference.safetensors")
    storage.fetch_file(storage.run_file(run.pk, HELDOUT), target / "heldout.safetensors")
    if generator.augment:  # copies of augmented images count as copies at generation too
        storage.fetch_file(storage.run_file(run.pk, TRAINING), target / "augmented.safetensors")
    if storage.exists(storage.run_file(run.pk, COPIES_GRID)):
        storage.fetch_file(storage.run_file(run.pk, COPIES_GRID), target / COPIES_GRID)
    _fetch(run, work, QUALITY)
    quality = load_json(work / QUALITY)
    model = registry.get(generator.kind).load(target, device=pick_device())
    # A conditional generator's grid runs through its classes, a row or so each.
    by_class = {"labels": torch.arange(SAMPLE_GRID_COUNT) % len(generator.classes)} if generator.classes else {}
    samples = model.sample(SAMPLE_GRID_COUNT, seed=SAMPLE_GRID_SEED, **by_class)
    save_grid(samples, target / "samples.png", columns=8)
    storage.publish(target, files_dir)
    warnings = TrainingRun.objects.values_list("warnings", flat=True).get(pk=run.pk)
    Generator.objects.filter(pk=generator.pk).update(
        files_dir=files_dir,
        sample_grid=f"{files_dir}/samples.png",
        warnings=warnings,
        quality=quality,
        status=Generator.Status.READY,
    )


# --- cleanup -----------------------------------------------------------------------------------


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
    storage.delete(storage.generator_file(run.generator_id, "progress.png"))
    TrainingRun.objects.filter(pk=run.pk).update(latest_grid=f"{generator_files_dir(run.generator_id)}/samples.png")
