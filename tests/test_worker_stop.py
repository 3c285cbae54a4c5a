"""Stop promptly, lose nothing (issue #21): SIGINT/SIGTERM to a worker stops a running training at its next
step, with a checkpoint; the task goes back to the queue (neither cancelled nor failed), the lease is given
back, the worker exits within seconds, and the next worker carries on from the checkpoint."""
from __future__ import annotations

import os

import pytest
from celery.exceptions import Reject
from django.utils import timezone

from apps.core import storage
from apps.generators import pipeline, shutdown, tasks
from apps.generators.models import Generator, TrainingRun

from .test_faults import start_run

LONG_TINY_RUN = {"dcgan": {"total_steps": 1500, "batch_size": 8, "ngf": 4, "ndf": 4, "checkpoint_every": 50,
                           "report_every": 10}}


@pytest.fixture
def stopping():
    yield shutdown.request
    shutdown.clear()


def prepared_run(api, monkeypatch) -> TrainingRun:
    monkeypatch.setattr("apps.generators.services._launch", lambda run_id: None)  # queue nothing
    generator = start_run(api)
    run = TrainingRun.objects.get(generator_id=generator["id"])
    assert pipeline.prepare(run.pk) and pipeline.augment(run.pk)
    return run


@pytest.mark.django_db
def test_a_stopping_worker_stops_training_at_a_checkpoint_and_gives_the_stage_back(api, settings, monkeypatch, stopping):
    settings.SYNTHGEN_TRAINING_OVERRIDES = {"dcgan": {**LONG_TINY_RUN["dcgan"], "total_steps": 200}}
    run = prepared_run(api, monkeypatch)
    steps, record = [], pipeline._ProgressRecorder.__call__

    def stop_at_step_70(self, progress):
        steps.append(progress.step)
        if progress.step == 70:
            stopping()  # as the worker_shutting_down signal does
        record(self, progress)

    monkeypatch.setattr(pipeline._ProgressRecorder, "__call__", stop_at_step_70)
    with pytest.raises(shutdown.StageInterrupted):
        pipeline.train(run.pk)
    assert steps[-2:] == [70, 70]  # the report of step 70, then the checkpoint the stop wrote before step 71
    stopped = TrainingRun.objects.get(pk=run.pk)
    assert (stopped.status, stopped.stage, stopped.step) == ("running", "train", 70)  # neither cancelled nor failed
    assert "train" not in stopped.completed_stages and not stopped.cancel_requested
    assert stopped.attempts == 0  # the stop is not a crash: it does not count against MAX_STAGE_ATTEMPTS
    assert (timezone.now() - stopped.heartbeat_at).total_seconds() > pipeline.stale_after()  # the lease is free
    assert Generator.objects.get(pk=run.generator_id).status == "training"
    assert storage.exists(storage.run_file(run.pk, "checkpoints/checkpoint.safetensors"))

    shutdown.clear()  # the next worker takes the stage at once and resumes from the checkpoint of step 70
    monkeypatch.setattr(pipeline._ProgressRecorder, "__call__", record)
    assert pipeline.train(run.pk) is True
    done = TrainingRun.objects.get(pk=run.pk)
    assert done.resumed_step == 70 and done.step == 200 and "train" in done.completed_stages
    assert done.attempts == 1


@pytest.mark.django_db
def test_the_task_of_a_stopped_stage_goes_back_to_the_queue(api, settings, monkeypatch, stopping):
    run = prepared_run(api, monkeypatch)
    stopping()
    result = tasks.train.apply(args=[run.pk])  # eager: the worker would reject the message, requeue=True
    assert result.state == "REJECTED" and isinstance(result.result, Reject) and result.result.requeue is True
    assert TrainingRun.objects.get(pk=run.pk).status == "running"


@pytest.mark.django_db
def test_an_error_raised_into_a_stage_by_the_shutdown_does_not_fail_the_run(api, monkeypatch, stopping):
    run = prepared_run(api, monkeypatch)

    def interrupted_by_celery(run, work):
        stopping()
        raise NotImplementedError("<SoloPool> does not implement kill_job")  # Celery's cold shutdown, solo pool

    with pytest.raises(shutdown.StageInterrupted):
        pipeline.run_stage(run.pk, "train", interrupted_by_celery)
    assert TrainingRun.objects.get(pk=run.pk).status == "running"
