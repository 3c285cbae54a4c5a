"""A generation job's task is queued by its name (the services do not import tasks.py): it goes to the gpu queue,
as CELERY_TASK_ROUTES says; in eager mode (the tests' default) it runs at once, which the API flow tests show."""

import pytest

from apps.generation import services
from apps.generators.models import Generator
from synthgen.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_a_job_is_queued_by_its_task_name_on_the_gpu_queue(user, monkeypatch, django_capture_on_commit_callbacks):
    generator = Generator.objects.create(
        owner=user,
        name="Tulips",
        kind="dcgan",
        resolution=32,
        preset="quick",
        status=Generator.Status.READY,
        files_dir="generators/tulips",
    )
    sent = []
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    monkeypatch.setattr(
        celery_app, "send_task", lambda name, args=None, kwargs=None, **options: sent.append((name, args, options))
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = services.start_generation(owner=user, generator=generator, count=3)
    [(name, args, options)] = sent
    assert (name, tuple(args)) == ("generation.generate", (job.pk,))
    task_type = options.pop("task_type", None)
    assert celery_app.amqp.router.route(options, name, args, {}, task_type)["queue"].name == "gpu"
