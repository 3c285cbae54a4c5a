"""Celery task for generation jobs (routed to the gpu queue): a thin caller of services.run_generation."""

from celery import shared_task

from apps.generators.tasks import with_storage_retries

from . import services


@shared_task(name=services.GENERATE_TASK, bind=True)
def generate(self, job_id: int) -> None:
    with_storage_retries(
        self,
        lambda: services.run_generation(job_id),
        lambda message: services.fail_job(job_id=job_id, message=f"Generation failed: {message}"),
    )
