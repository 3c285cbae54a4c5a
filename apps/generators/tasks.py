"""Celery tasks: thin callers of the pipeline stages, chained by run id."""
from celery import chain, shared_task

from . import pipeline


@shared_task(name="generators.prepare")
def prepare(run_id: int) -> None:
    pipeline.prepare(run_id)


@shared_task(name="generators.augment")
def augment(run_id: int) -> None:
    pipeline.augment(run_id)


@shared_task(name="generators.train")
def train(run_id: int) -> None:
    pipeline.train(run_id)


@shared_task(name="generators.register")
def register(run_id: int) -> None:
    pipeline.register(run_id)


@shared_task(name="generators.cleanup")
def cleanup(run_id: int) -> None:
    pipeline.cleanup(run_id)


def launch_pipeline(run_id: int) -> None:
    """Queue the whole chain for a run. Train goes to the gpu queue (CELERY_TASK_ROUTES)."""
    chain(
        prepare.si(run_id),
        augment.si(run_id),
        train.si(run_id),
        register.si(run_id),
        cleanup.si(run_id),
    ).apply_async()
