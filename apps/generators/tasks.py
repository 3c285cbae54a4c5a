"""Celery tasks: thin callers of the pipeline's stages (stages/), queued as a chain by task name
(services.launch_pipeline), and the worker's start and stop (its presence, the sweep of stale runs, a stop that
sends the running stage back to the queue)."""

import logging
import os
from collections.abc import Callable

import torch
from celery import Task, platforms, shared_task
from celery.exceptions import Reject, WorkerTerminate
from celery.platforms import EX_FAILURE
from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down
from django.conf import settings

from apps.core import storage
from apps.core.storage import StorageUnavailable
from apps.ml.engine.device import pick_device

from . import presence, runs, shutdown, step_costs
from .services import stage_task_name
from .stages import STAGE_ORDER, data, finish, quality, training

log = logging.getLogger(__name__)


@shared_task(name=stage_task_name("prepare"), bind=True)
def prepare(self, run_id: int) -> None:
    _run(self, "prepare", data.prepare, run_id)


@shared_task(name=stage_task_name("augment"), bind=True)
def augment(self, run_id: int) -> None:
    _run(self, "augment", data.augment, run_id)


@shared_task(name=stage_task_name("train"), bind=True)
def train(self, run_id: int) -> None:
    _run(self, "train", training.train, run_id)


@shared_task(name=stage_task_name("evaluate"), bind=True)
def evaluate(self, run_id: int) -> None:
    _run(self, "evaluate", quality.evaluate, run_id)


@shared_task(name=stage_task_name("register"), bind=True)
def register(self, run_id: int) -> None:
    _run(self, "register", finish.register, run_id)


@shared_task(name=stage_task_name("cleanup"), bind=True)
def cleanup(self, run_id: int) -> None:
    _run(self, "cleanup", finish.cleanup, run_id)


@shared_task(name="generators.sweep_stale_runs")
def sweep_stale_runs() -> None:
    runs.sweep_stale_runs()


@shared_task(name="generators.measure_step_costs")
def measure_step_costs() -> None:
    """Time a few training steps of one model shape the presets pick on this worker's device (step_costs.py), then
    queue the next shape behind whatever is queued by then: a training waits for one shape at most (seconds)."""
    if shutdown.requested():
        return
    device = pick_device()
    if step_costs.measure_next(device, should_stop=shutdown.requested) and step_costs.unmeasured_shapes(device):
        measure_step_costs.apply_async(queue=presence.TRAINING_QUEUE)


def stage_tasks() -> dict[str, Task]:
    """The task of each stage (named by services.stage_task_name, as services.launch_pipeline queues them), in
    STAGE_ORDER."""
    tasks = {task.name: task for task in (prepare, augment, train, evaluate, register, cleanup)}
    return {stage: tasks[stage_task_name(stage)] for stage in STAGE_ORDER}


def _run(task: Task, stage: str, run_stage: Callable[[int], bool], run_id: int) -> None:
    """Run one stage; when the storage cannot be reached, retry with back-off, then fail the run. When the worker
    is stopping (shutdown.py), the stage stops at its next step and the task goes back to the queue."""
    if shutdown.requested():  # delivered (again) to a worker that is stopping: straight back to the queue
        raise Reject("the worker is stopping", requeue=True)
    try:
        with_storage_retries(
            task,
            lambda: run_stage(run_id),
            lambda message: runs.fail_run(run_id=run_id, stage=stage, message=f"The {stage} stage failed: {message}"),
        )
    except shutdown.StageInterrupted:
        # Not acknowledged: the message goes back to the queue (with the rest of the chain), so the next worker -
        # this one started again, or another - resumes the stage from its checkpoint at once.
        raise Reject("the worker is stopping", requeue=True) from None


def with_storage_retries(task, work, fail) -> None:
    """Call ``work()``. When it raises StorageUnavailable, retry the task after 1x, 2x, 4x ...
    SYNTHGEN_STORAGE_RETRY_SECONDS (at most 5 minutes apart); once SYNTHGEN_STORAGE_RETRIES retries
    have failed, call ``fail(message)`` and re-raise. (Eager tasks, which Celery cannot send again,
    retry here at once.)"""
    retries = task.request.retries or 0
    while True:
        try:
            return work()
        except StorageUnavailable as exc:
            if retries >= settings.SYNTHGEN_STORAGE_RETRIES:
                fail(f"{exc} (tried {retries + 1} times; check that the storage is up and the bucket exists)")
                raise
            if task.request.is_eager:
                retries += 1
                continue
            delay = min(300, settings.SYNTHGEN_STORAGE_RETRY_SECONDS * 2**retries)
            log.warning("%s: %s; retrying in %s s", task.name, exc, delay)
            raise task.retry(exc=exc, countdown=delay, max_retries=settings.SYNTHGEN_STORAGE_RETRIES) from exc


# --- the worker's start and stop -----------------------------------------------------------------------------


@worker_ready.connect
def _sweep_when_a_worker_starts(**kwargs) -> None:
    """A worker that starts (again) picks up runs a dead worker left behind: at once those whose worker
    process ran on this host and is gone (a restart), the others once their heartbeat is stale."""
    try:
        runs.sweep_stale_runs()
    except Exception:  # never keep a worker from starting
        log.exception("sweeping stale runs failed")


@worker_ready.connect
def _check_storage(**kwargs) -> None:
    """Say at once, in the worker's log, when the storage cannot be reached (its stages would retry, then fail)."""
    try:
        storage.check()
        log.info("storage: %s", storage.describe())
    except Exception as exc:  # never keep a worker from starting
        log.error("storage: %s", exc)
    try:  # the scratch folders that workers killed mid-stage on this host left behind
        if removed := storage.remove_stale_scratch():
            log.info("removed the scratch folders of dead processes: %s", removed)
    except OSError:
        log.exception("could not clean the scratch folder")


@worker_ready.connect
def _say_the_worker_is_up(sender=None, **kwargs) -> None:
    """The worker's WorkerPresence row, beaten every WORKER_BEAT_SECONDS from a thread (the wizard says whether a
    worker that trains is up); a worker that trains measures the step costs it has not measured yet."""
    try:
        try:
            queues = list(sender.app.amqp.queues.consume_from)
        except AttributeError:
            queues = [presence.TRAINING_QUEUE, "default"]
        device = pick_device()
        holder = runs.lease_holder()
        presence.worker_started(holder=holder, queues=queues, device=device, name=step_costs.device_name(device))
        presence.start_beating(holder)
        if (
            presence.TRAINING_QUEUE in queues
            and settings.SYNTHGEN_MEASURE_STEP_COSTS
            and step_costs.unmeasured_shapes(device)
        ):
            measure_step_costs.apply_async(queue=presence.TRAINING_QUEUE)
    except Exception:  # never keep a worker from starting
        log.exception("could not record the worker's presence")


@worker_shutting_down.connect
def _say_the_worker_stops(**kwargs) -> None:
    presence.stop_beating()  # the presence thread writes it; nothing here may wait


@worker_shutdown.connect
def _said_the_worker_stopped(**kwargs) -> None:
    """Once the worker has stopped (the main thread, no task running): in case the presence thread had no time."""
    try:
        presence.said_stopped(runs.lease_holder())
    except Exception:  # never keep a worker from stopping
        log.warning("could not record that the worker stopped", exc_info=True)


@worker_shutting_down.connect
def _stop_the_running_stage(sig=None, how=None, **kwargs) -> None:
    """SIGINT/SIGTERM (Celery's warm shutdown would wait for the whole training): the running stage stops at its
    next step and goes back to the queue (shutdown.py). A second Ctrl-C then stops the worker at once: Celery's
    own second SIGINT starts a cold shutdown that cannot cancel a task of the solo pool."""
    shutdown.request()
    platforms.signals["SIGINT"] = _stop_now


def _stop_now(*args) -> None:
    """The second Ctrl-C: raised in the worker's main thread, wherever it is (the task is not acknowledged: the
    broker, or the next worker's start-up sweep, hands it to the next worker, which resumes from the checkpoint)."""
    raise WorkerTerminate(EX_FAILURE)


@worker_init.connect
def _set_torch_threads(**kwargs) -> None:
    """SYNTHGEN_TORCH_THREADS caps PyTorch's CPU threads (1 avoids oversubscription on busy small CPUs)."""
    threads = os.environ.get("SYNTHGEN_TORCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
