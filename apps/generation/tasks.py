"""Celery task for generation jobs (routed to the gpu queue)."""
from celery import shared_task

from . import services


@shared_task(name="generation.generate")
def generate(job_id: int) -> None:
    services.run_generation(job_id)
