"""A worker that is asked to stop (SIGINT or SIGTERM: Ctrl-C on `make run`, a deploy stopping a container).

Celery's warm shutdown waits for the running task, and a training stage can run for hours. Instead:
the running stage stops at its next step (the trainer asks ``should_stop`` before every step and writes
a checkpoint when it stops), the stage gives its lease back, and its task goes back to the queue
unacknowledged (tasks.py), so that the next worker - this one started again, or another one - carries
on from the checkpoint at once. Nothing is cancelled or failed. A second Ctrl-C stops the worker at once.

tasks.py connects Celery's ``worker_shutting_down`` signal to :func:`request`; the train stage's
``should_stop`` reads :func:`requested`; run_stage turns :class:`StageInterrupted` into a released lease.
Plain module state: a worker process runs one stage at a time (the solo pool), in its main thread.
"""

from __future__ import annotations

_requested = False


class StageInterrupted(Exception):
    """The worker is stopping: the stage stopped early, kept its checkpoint, and is to run again elsewhere."""


def request() -> None:
    """This worker process is stopping: the running stage is to stop at its next step."""
    global _requested
    _requested = True


def requested() -> bool:
    return _requested


def clear() -> None:
    """Forget a stop request (tests that stop a stage in their own process)."""
    global _requested
    _requested = False
