"""Celery tasks: thin callers of the pipeline stages, chained by run id."""

import logging
import os
import threading

from celery import chain, platforms, shared_task
from celery.exceptions import Reject, WorkerTerminate
from celery.platforms import EX_FAILURE
from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down
from django.conf import settings

from apps.core import storage
from apps.core.storage import StorageUnavailable

from . import pipeline, shutdown
from .stages import STAGE_ORDER


def _run(task, stage: str, run_id: int) -> None:
    """Run one stage; when the storage cannot be reached, retry with back-off, then fail the run. When the worker
    is stopping (shutdown.py), the stage stops at its next step and the task goes back to the queue."""
    if shutdown.requested():  # delivered (again) to a worker that is stopping: straight back to the queue
        raise Reject("the worker is stopping", requeue=True)
    try:
        with_storage_retries(
            task,
            lambda: getattr(pipeline, stage)(run_id),
            lambda message: pipeline.fail_run(
                run_id=run_id, stage=stage, message=f"The {stage} stage failed: {message}"
            ),
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
            logging.getLogger(__name__).warning("%s: %s; retrying in %s s", task.name, exc, delay)
            raise task.retry(exc=exc, countdown=delay, max_retries=settings.SYNTHGEN_STORAGE_RETRIES) from exc


@shared_task(name="generators.prepare", bind=True)
def prepare(self, run_id: int) -> None:
    _run(self, "prepare", run_id)


@shared_task(name="generators.augment", bind=True)
def augment(self, run_id: int) -> None:
    _run(self, "augment", run_id)


@shared_task(name="generators.train", bind=True)
def train(self, run_id: int) -> None:
    _run(self, "train", run_id)


@shared_task(name="generators.evaluate", bind=True)
def evaluate(self, run_id: int) -> None:
    _run(self, "evaluate", run_id)


@shared_task(name="generators.register", bind=True)
def register(self, run_id: int) -> None:
    _run(self, "register", run_id)


@shared_task(name="generators.cleanup", bind=True)
def cleanup(self, run_id: int) -> None:
    _run(self, "cleanup", run_id)


def stage_tasks() -> dict:
    """The task of each stage (named "generators.<stage>"), in STAGE_ORDER."""
    tasks = {
        task.name.removeprefix("generators."): task for task in (prepare, augment, train, evaluate, register, cleanup)
    }
    return {stage: tasks[stage] for stage in STAGE_ORDER}


def launch_pipeline(run_id: int) -> None:
    """Queue the whole chain for a run, in STAGE_ORDER. Train goes to the gpu queue (CELERY_TASK_ROUTES)."""
    chain(*(task.si(run_id) for task in stage_tasks().values())).apply_async()


@shared_task(name="generators.sweep_stale_runs")
def sweep_stale_runs() -> None:
    pipeline.sweep_stale_runs()


@worker_ready.connect
def _sweep_when_a_worker_starts(**kwargs) -> None:
    """A worker that starts (again) picks up runs a dead worker left behind: at once those whose worker
    process ran on this host and is gone (a restart), the others once their heartbeat is stale."""
    try:
        pipeline.sweep_stale_runs()
    except Exception:  # never keep a worker from starting
        logging.getLogger(__name__).exception("sweeping stale runs failed")


@worker_ready.connect
def _check_storage(**kwargs) -> None:
    """Say at once, in the worker's log, when the storage cannot be reached (its stages would retry, then fail)."""
    try:
        storage.check()
        logging.getLogger(__name__).info("storage: %s", storage.describe())
    except Exception as exc:  # never keep a worker from starting
        logging.getLogger(__name__).error("storage: %s", exc)
    try:  # the scratch folders that workers killed mid-stage on this host left behind
        if removed := storage.remove_stale_scratch():
            logging.getLogger(__name__).info("removed the scratch folders of dead processes: %s", removed)
    except OSError:
        logging.getLogger(__name__).exception("could not clean the scratch folder")


@shared_task(name="generators.measure_step_costs")
def measure_step_costs() -> None:
    """Time a few training steps of one model shape the presets pick on this worker's device (estimates.py), then
    queue the next shape behind whatever is queued by then: a training waits for one shape at most (seconds)."""
    from apps.ml.engine.device import pick_device

    from . import estimates

    if shutdown.requested():
        return
    device = pick_device()
    if estimates.measure_next(device, should_stop=shutdown.requested) and estimates.unmeasured_shapes(device):
        measure_step_costs.apply_async(queue=estimates.TRAINING_QUEUE)


_presence_stop = threading.Event()
_presence_thread: list[threading.Thread | None] = [None]  # the presence thread of this worker, once started
PRESENCE_JOIN_SECONDS = 2.0  # how long a stopping worker waits for the presence thread to say it stopped


@worker_ready.connect
def _say_the_worker_is_up(sender=None, **kwargs) -> None:
    """The worker's WorkerPresence row, beaten every WORKER_BEAT_SECONDS from a thread (the wizard says whether a
    worker that trains is up); a worker that trains measures the step costs it has not measured yet."""
    try:
        from apps.ml.engine.device import pick_device

        from . import estimates

        try:
            queues = list(sender.app.amqp.queues.consume_from)
        except AttributeError:
            queues = [estimates.TRAINING_QUEUE, "default"]
        device = pick_device()
        holder = pipeline.lease_holder()
        estimates.worker_started(holder=holder, queues=queues, device=device, name=estimates.device_name(device))
        _presence_thread[0] = threading.Thread(
            target=_beat_presence, args=(holder,), name="synthgen-presence", daemon=True
        )
        _presence_thread[0].start()
        if (
            estimates.TRAINING_QUEUE in queues
            and settings.SYNTHGEN_MEASURE_STEP_COSTS
            and estimates.unmeasured_shapes(device)
        ):
            measure_step_costs.apply_async(queue=estimates.TRAINING_QUEUE)
    except Exception:  # never keep a worker from starting
        logging.getLogger(__name__).exception("could not record the worker's presence")


def _beat_presence(holder: str) -> None:
    """The presence thread: beats every WORKER_BEAT_SECONDS; when the worker stops, says so (from this thread: the
    shutdown signal's handler runs in the main thread, perhaps in the middle of the training's own query)."""
    from django.db import connection

    from . import estimates

    try:
        while not _presence_stop.wait(estimates.WORKER_BEAT_SECONDS):
            try:
                estimates.worker_seen(holder)
            except Exception:
                logging.getLogger(__name__).warning("could not beat the worker's presence", exc_info=True)
            finally:
                connection.close()
        estimates.worker_stopped(holder)
    except Exception:
        logging.getLogger(__name__).warning("could not record that the worker stops", exc_info=True)
    finally:
        connection.close()


@worker_shutting_down.connect
def _say_the_worker_stops(**kwargs) -> None:
    _presence_stop.set()  # the presence thread writes it; nothing here may wait


@worker_shutdown.connect
def _said_the_worker_stopped(**kwargs) -> None:
    """Once the worker has stopped (the main thread, no task running): in case the presence thread had no time."""
    try:
        from . import estimates

        _presence_stop.set()
        thread = _presence_thread[0]
        if thread is not None:
            thread.join(PRESENCE_JOIN_SECONDS)  # it says so itself; two writers at once wait on SQLite's lock
            if not thread.is_alive():
                return
        estimates.worker_stopped(pipeline.lease_holder())
    except Exception:  # never keep a worker from stopping
        logging.getLogger(__name__).warning("could not record that the worker stopped", exc_info=True)


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
        import torch

        torch.set_num_threads(int(threads))
