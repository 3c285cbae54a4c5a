"""Celery tasks: thin callers of the pipeline stages, chained by run id."""
import logging
import os

from celery import chain, shared_task
from celery.signals import worker_init, worker_ready

from . import pipeline
from .stages import STAGE_ORDER


@shared_task(name="generators.prepare")
def prepare(run_id: int) -> None:
    pipeline.prepare(run_id)


@shared_task(name="generators.augment")
def augment(run_id: int) -> None:
    pipeline.augment(run_id)


@shared_task(name="generators.train")
def train(run_id: int) -> None:
    pipeline.train(run_id)


@shared_task(name="generators.evaluate")
def evaluate(run_id: int) -> None:
    pipeline.evaluate(run_id)


@shared_task(name="generators.register")
def register(run_id: int) -> None:
    pipeline.register(run_id)


@shared_task(name="generators.cleanup")
def cleanup(run_id: int) -> None:
    pipeline.cleanup(run_id)


def stage_tasks() -> dict:
    """The task of each stage (named "generators.<stage>"), in STAGE_ORDER."""
    tasks = {task.name.removeprefix("generators."): task for task in (prepare, augment, train, evaluate, register, cleanup)}
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


@worker_init.connect
def _set_torch_threads(**kwargs) -> None:
    """SYNTHGEN_TORCH_THREADS caps PyTorch's CPU threads (1 avoids oversubscription on busy small CPUs)."""
    threads = os.environ.get("SYNTHGEN_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
