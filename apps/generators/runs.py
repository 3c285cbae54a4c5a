"""A training run's stages as leases: who runs a stage, whether its worker is still alive, what happens when it
stops, fails or dies. The stage bodies (stages/) run inside :func:`run_stage`; the Celery tasks (tasks.py) call
the stages.

Each stage takes a run id, is idempotent (a finished stage is skipped when delivered again), records its stage
in the database, and marks the run failed, with the error, when it raises. Any stage runs on any host: it gets a
local scratch folder (apps/core/storage.py), removed when it ends, and reads and writes the run's files in storage
(runs/<id>/). Storage that cannot be reached raises StorageUnavailable: the stage gives its lease back and the
task retries it (tasks.py); only when the retries run out does the run fail. A worker that dies leaves a stale
heartbeat: :func:`sweep_stale_runs` queues its run again, and the stage is taken over.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from apps.core import storage
from apps.core.storage import StorageUnavailable

from . import shutdown
from .models import Generator, TrainingRun
from .services import launch_pipeline, mark_cancelled
from .stages import STAGE_ORDER

log = logging.getLogger(__name__)

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

    Skipped when: the run is gone (deleted with its generator) or no longer active; the stage is already
    done (a task delivered twice); an earlier stage is not done (a leftover message of a chain that stopped);
    or another worker holds the stage (same stage, fresh heartbeat, holder not known dead). A stage whose worker died
    (stale heartbeat, or a holder process on this host that is gone) is taken over and, for training,
    resumes from its last checkpoint.
    """
    run = _take_lease(run_id, stage)
    if run is None:
        return False
    try:
        with storage.scratch(f"run{run_id}-{stage}") as work:
            body(run, work)
    except StageSkipped:
        _forget_if_deleted(run)
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
        if _forget_if_deleted(run):
            return False
        if shutdown.requested():  # raised into the stage by the worker's shutdown (e.g. Celery's cold shutdown)
            log.warning(
                "run %s: %s stopped while the worker was stopping (%s); it goes back to the queue", run_id, stage, exc
            )
            _release_lease(run_id, stage, run.holder)
            raise shutdown.StageInterrupted() from exc
        log.exception("run %s failed in stage %s", run_id, stage)
        fail_run(run_id=run_id, stage=stage, message=_user_message(stage, exc))
        raise
    if _forget_if_deleted(run):
        return False
    _mark_done(run, stage)
    return True


def _forget_if_deleted(run: TrainingRun) -> bool:
    """Whether ``run`` was deleted (with its generator) while one of its stages ran. If so, remove what the stage
    stored after the deletion had removed the run's and the generator's files, so nothing is left orphaned."""
    if TrainingRun.objects.filter(pk=run.pk).exists():
        return False
    log.info("run %s: its generator was deleted while a stage ran; removing what the stage stored", run.pk)
    storage.remove_prefix(storage.run_prefix(run.pk))
    storage.remove_prefix(storage.generator_prefix(run.generator_id))
    return True


def _take_lease(run_id: int, stage: str) -> TrainingRun | None:
    """The run, with ``stage`` now held by this worker process; None when the stage is to be skipped (see
    :func:`run_stage`), was cancelled, or was started MAX_STAGE_ATTEMPTS times (the run then fails)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("generator").filter(pk=run_id).first()
        if run is None:  # a leftover message of a run deleted with its generator
            log.info("run %s: skipping %s, the run was deleted with its generator", run_id, stage)
            return None
        if not run.is_active or stage in run.completed_stages:
            return None
        missing = [s for s in STAGE_ORDER[: STAGE_ORDER.index(stage)] if s not in run.completed_stages]
        if missing:
            log.info("run %s: skipping %s, earlier stages not done: %s", run_id, stage, missing)
            return None
        now = timezone.now()
        fresh = run.heartbeat_at and (now - run.heartbeat_at).total_seconds() < stale_after()
        if run.stage == stage and fresh and not holder_gone(run.holder):
            log.info("run %s: %s is held by another worker", run_id, stage)
            return None
        if run.cancel_requested:
            mark_cancelled(run=run)
            return None
        run.attempts = run.attempts + 1 if run.stage == stage else 1
        if run.attempts > MAX_STAGE_ATTEMPTS:
            message = (
                f"The {stage} stage was started {MAX_STAGE_ATTEMPTS} times and its worker stopped each "
                "time (out of memory?). Try a smaller image size or preset."
            )
            run.save(update_fields=["attempts"])
            transaction.on_commit(lambda: fail_run(run_id=run_id, stage=stage, message=message))
            return None
        run.status = TrainingRun.Status.RUNNING
        run.stage = stage
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.holder = lease_holder()
        run.requeued_at = None  # a re-queued run has been picked up: the sweeper may re-queue it again
        fields = ["status", "stage", "attempts", "started_at", "heartbeat_at", "holder", "requeued_at", "updated_at"]
        run.save(update_fields=fields)
        if run.generator.status == Generator.Status.QUEUED:
            Generator.objects.filter(pk=run.generator_id).update(status=Generator.Status.TRAINING)
    return run


def _mark_done(run: TrainingRun, stage: str) -> None:
    run.refresh_from_db()
    if stage not in run.completed_stages:
        run.completed_stages = [*run.completed_stages, stage]
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["completed_stages", "heartbeat_at", "updated_at"])


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
