"""Which workers are up: a :class:`WorkerPresence` row per worker process, beaten every :data:`WORKER_BEAT_SECONDS`
from a thread of the worker while it runs, so the wizard can say when no worker is up, and which device the
training will get. tasks.py starts and stops the beating from Celery's worker signals."""

from __future__ import annotations

import logging
import threading

from django.db import connection
from django.utils import timezone

from .models import WorkerPresence
from .step_costs import device_class

log = logging.getLogger(__name__)

WORKER_BEAT_SECONDS = 30  # how often a worker writes WorkerPresence.seen_at
WORKER_GONE_SECONDS = 3 * WORKER_BEAT_SECONDS  # a worker not seen this long is taken to be down
TRAINING_QUEUE = "gpu"  # the queue the train stage goes to (CELERY_TASK_ROUTES)
JOIN_SECONDS = 2.0  # how long a stopping worker waits for the presence thread to say it stopped


def worker_started(*, holder: str, queues: list[str], device: str, name: str = "") -> WorkerPresence:
    now = timezone.now()
    worker, _ = WorkerPresence.objects.update_or_create(
        holder=holder,
        defaults={
            "host": holder.split(":")[0],
            "queues": sorted(queues),
            "device": device_class(device),
            "device_name": name,
            "started_at": now,
            "seen_at": now,
            "stopped_at": None,
        },
    )
    return worker


def worker_seen(holder: str) -> None:
    WorkerPresence.objects.filter(holder=holder, stopped_at__isnull=True).update(seen_at=timezone.now())


def worker_stopped(holder: str) -> None:
    WorkerPresence.objects.filter(holder=holder).update(stopped_at=timezone.now())
    # Rows of workers long gone are of no use to anyone.
    WorkerPresence.objects.filter(seen_at__lt=timezone.now() - timezone.timedelta(days=7)).delete()


def live_workers() -> list[WorkerPresence]:
    """The workers up now: not stopped, seen within WORKER_GONE_SECONDS."""
    recent = timezone.now() - timezone.timedelta(seconds=WORKER_GONE_SECONDS)
    return list(WorkerPresence.objects.filter(stopped_at__isnull=True, seen_at__gte=recent).order_by("-seen_at"))


def training_workers() -> list[WorkerPresence]:
    """The workers up now that train (they consume the training queue)."""
    return [worker for worker in live_workers() if TRAINING_QUEUE in worker.queues]


# --- this worker's beat ----------------------------------------------------------------------------------

_stop = threading.Event()
_thread: list[threading.Thread | None] = [None]  # the presence thread of this worker, once started


def start_beating(holder: str) -> None:
    """The presence thread of this worker process: beats every WORKER_BEAT_SECONDS until :func:`stop_beating`."""
    _thread[0] = threading.Thread(target=_beat, args=(holder,), name="synthgen-presence", daemon=True)
    _thread[0].start()


def _beat(holder: str) -> None:
    """The presence thread: beats every WORKER_BEAT_SECONDS; when the worker stops, says so (from this thread: the
    shutdown signal's handler runs in the main thread, perhaps in the middle of the training's own query)."""
    try:
        while not _stop.wait(WORKER_BEAT_SECONDS):
            try:
                worker_seen(holder)
            except Exception:
                log.warning("could not beat the worker's presence", exc_info=True)
            finally:
                connection.close()
        worker_stopped(holder)
    except Exception:
        log.warning("could not record that the worker stops", exc_info=True)
    finally:
        connection.close()


def stop_beating() -> None:
    """Tell the presence thread to say the worker stopped; waits for nothing (the thread writes it)."""
    _stop.set()


def said_stopped(holder: str) -> None:
    """Once the worker has stopped (the main thread, no task running): in case the presence thread had no time, say
    so from here."""
    _stop.set()
    thread = _thread[0]
    if thread is not None:
        thread.join(JOIN_SECONDS)  # it says so itself; two writers at once wait on SQLite's lock
        if not thread.is_alive():
            return
    worker_stopped(holder)
