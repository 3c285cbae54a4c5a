"""Stop promptly, lose nothing (issue #21): SIGINT/SIGTERM to a worker stops a running training at its next
step, with a checkpoint; the task goes back to the queue (neither cancelled nor failed), the lease is given
back, the worker exits within seconds, and the next worker carries on from the checkpoint."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
import requests
from celery.exceptions import Reject, WorkerTerminate
from django.conf import settings
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.core import storage
from apps.generators import runs, shutdown, tasks
from apps.generators.models import Generator, TrainingRun
from apps.generators.stages import data, training
from tests.factories import LONG_TINY_RUN, free_port, make, png_bytes, start_run
from tests.realworker import REDIS_URL, Worker, database_url, require_real_services, wait_for


@pytest.fixture
def stopping():
    yield shutdown.request
    shutdown.clear()


def prepared_run(api, monkeypatch) -> TrainingRun:
    monkeypatch.setattr("apps.generators.services.launch_pipeline", lambda run_id: None)  # queue nothing
    generator = start_run(api)
    run = TrainingRun.objects.get(generator_id=generator["id"])
    assert data.prepare(run.pk) and data.augment(run.pk)
    return run


@pytest.mark.django_db
def test_a_stopping_worker_stops_training_at_a_checkpoint_and_gives_the_stage_back(
    api, settings, monkeypatch, stopping
):
    settings.SYNTHGEN_TRAINING_OVERRIDES = {"dcgan": {**LONG_TINY_RUN["dcgan"], "total_steps": 200}}
    run = prepared_run(api, monkeypatch)
    steps, record = [], training._ProgressRecorder.__call__

    def stop_at_step_70(self, progress):
        steps.append(progress.step)
        if progress.step == 70:
            stopping()  # as the worker_shutting_down signal does
        record(self, progress)

    monkeypatch.setattr(training._ProgressRecorder, "__call__", stop_at_step_70)
    with pytest.raises(shutdown.StageInterrupted):
        training.train(run.pk)
    assert steps[-2:] == [70, 70]  # the report of step 70, then the checkpoint the stop wrote before step 71
    stopped = TrainingRun.objects.get(pk=run.pk)
    assert (stopped.status, stopped.stage, stopped.step) == ("running", "train", 70)  # neither cancelled nor failed
    assert "train" not in stopped.completed_stages and not stopped.cancel_requested
    assert stopped.attempts == 0  # the stop is not a crash: it does not count against MAX_STAGE_ATTEMPTS
    assert (timezone.now() - stopped.heartbeat_at).total_seconds() > runs.stale_after()  # the lease is free
    assert Generator.objects.get(pk=run.generator_id).status == "training"
    assert storage.exists(storage.run_file(run.pk, "checkpoints/checkpoint.safetensors"))

    shutdown.clear()  # the next worker takes the stage at once and resumes from the checkpoint of step 70
    monkeypatch.setattr(training._ProgressRecorder, "__call__", record)
    assert training.train(run.pk) is True
    done = TrainingRun.objects.get(pk=run.pk)
    assert done.resumed_step == 70 and done.step == 200 and "train" in done.completed_stages
    assert done.attempts == 1


@pytest.mark.django_db
def test_the_task_of_a_stopped_stage_goes_back_to_the_queue(api, settings, monkeypatch, stopping):
    run = prepared_run(api, monkeypatch)
    stopping()
    result = tasks.train.apply(args=[run.pk])  # eager: the worker would reject the message, requeue=True
    assert result.state == "REJECTED" and isinstance(result.result, Reject) and result.result.requeue is True
    run = TrainingRun.objects.get(pk=run.pk)
    assert (run.stage, run.status, run.attempts) == ("augment", "running", 1)  # a stopping worker starts nothing


@pytest.mark.django_db
def test_an_error_raised_into_a_stage_by_the_shutdown_does_not_fail_the_run(api, monkeypatch, stopping):
    run = prepared_run(api, monkeypatch)

    def interrupted_by_celery(run, work):
        stopping()
        raise NotImplementedError("<SoloPool> does not implement kill_job")  # Celery's cold shutdown, solo pool

    with pytest.raises(shutdown.StageInterrupted):
        runs.run_stage(run.pk, "train", interrupted_by_celery)
    assert TrainingRun.objects.get(pk=run.pk).status == "running"


def test_the_first_signal_asks_the_stage_to_stop_and_a_second_ctrl_c_stops_at_once(stopping):
    before = signal.getsignal(signal.SIGINT)
    try:
        tasks._stop_the_running_stage(sig="SIGTERM", how="Warm", exitcode=0)  # Celery's worker_shutting_down
        assert shutdown.requested()
        assert signal.getsignal(signal.SIGINT) is tasks._stop_now
        with pytest.raises(WorkerTerminate):  # raised in the worker's main thread, wherever it is
            tasks._stop_now(signal.SIGINT, None)
    finally:
        signal.signal(signal.SIGINT, before)


# --- `make run`, Ctrl-C, `make run` again --------------------------------------------------------------------


def make_run_env(tmp_path: Path, port: int) -> dict[str, str]:
    """`make run` as a user starts it (dev settings, filesystem broker in its var/), on the test's database and media
    folder so that the test can read the run, with a long tiny training."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "SYNTHGEN_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="synthgen.settings.dev",
        DJANGO_SUPERUSER_PASSWORD=secrets.token_urlsafe(16),
        DATABASE_URL=database_url(),
        SYNTHGEN_VAR_DIR=str(tmp_path / "var"),
        SYNTHGEN_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        SYNTHGEN_WORK_DIR=str(tmp_path / "work"),
        SYNTHGEN_TRAINING_OVERRIDES=json.dumps(LONG_TINY_RUN),
        SYNTHGEN_MIN_TRAINING_IMAGES="4",
        SYNTHGEN_QUALITY_SAMPLES="16",
        SYNTHGEN_QUALITY_SEEDS="0",
        SYNTHGEN_QUALITY_CLASSIFIER_STEPS="10",
        SYNTHGEN_DEVICE="cpu",
        SYNTHGEN_TORCH_THREADS="1",
        OMP_NUM_THREADS="1",
        PORT=str(port),
    )
    return env


def wait(fetch, process: subprocess.Popen | None, log: Path, timeout: float, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            assert process.poll() is None, f"`make run` exited:\n{log.read_text()[-4000:]}"
        value = fetch()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s:\n{log.read_text()[-4000:]}")


def ps(pgid: int) -> str:
    return subprocess.run(["ps", "-o", "pid=,stat=,cmd=", "-g", str(pgid)], capture_output=True, text=True).stdout


def living(pgid: int) -> list[str]:
    """The processes of a process group that still run (exited ones waiting to be reaped do not count)."""
    return [line for line in ps(pgid).splitlines() if line.split()[1:2] and not line.split()[1].startswith("Z")]


def stop_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_ctrl_c_on_make_run_mid_training_stops_within_15_s_and_the_next_make_run_resumes(user, tmp_path):
    require_real_services()  # PostgreSQL: `make run` and the test share the database
    port = free_port()
    env, base = make_run_env(tmp_path, port), f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Token {Token.objects.create(user=user).key}"}

    def up() -> bool:
        try:
            return requests.get(f"{base}/api/", timeout=5).status_code == 401
        except requests.RequestException:
            return False

    first_log, second_log = tmp_path / "make-run-1.log", tmp_path / "make-run-2.log"
    first = make("run", env, first_log)  # its own process group: killpg below is what Ctrl-C in a terminal sends
    second = None
    try:
        wait(up, first, first_log, timeout=120)
        images = [("images", (f"img{i}.png", png_bytes(i), "image/png")) for i in range(8)]
        dataset = requests.post(
            f"{base}/api/datasets/", data={"name": "ellipses"}, files=images, headers=auth, timeout=60
        )
        assert dataset.status_code == 201, dataset.text
        created = requests.post(
            f"{base}/api/generators/",
            headers=auth,
            timeout=60,
            json={
                "name": "ellipses",
                "dataset": dataset.json()["id"],
                "kind": "dcgan",
                "resolution": 32,
                "augment": False,
                "preset": "quick",
            },
        )
        assert created.status_code == 202, created.text
        generator_id = created.json()["id"]
        run = wait(
            lambda: TrainingRun.objects.filter(generator_id=generator_id, step__gte=120).first(),
            first,
            first_log,
            timeout=240,
        )

        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C
        sent = time.monotonic()
        while living(first.pid) and time.monotonic() - sent < 15:
            time.sleep(0.1)
        took = time.monotonic() - sent
        assert not living(first.pid), (
            f"still running 15 s after Ctrl-C:\n{ps(first.pid)}\n{first_log.read_text()[-4000:]}"
        )
        first.wait(timeout=5)
        log = first_log.read_text()
        assert "goes back to the queue and resumes from its checkpoint" in log, log[-4000:]

        stopped = TrainingRun.objects.get(pk=run.pk)
        assert (stopped.status, stopped.stage) == ("running", "train"), stopped.error  # not cancelled, not failed
        assert 120 <= stopped.step < 1500, "training finished before Ctrl-C; make the run longer"
        assert Generator.objects.get(pk=generator_id).status == "training"
        assert storage.exists(storage.run_file(run.pk, "checkpoints/checkpoint.safetensors"))

        second = make("run", env, second_log)
        resumed = wait(
            lambda: TrainingRun.objects.filter(pk=run.pk, resumed_step__gt=0).first(), second, second_log, timeout=120
        )
        assert resumed.resumed_step >= 100, resumed.resumed_step  # from the checkpoint Ctrl-C wrote, not from 0
        done = wait(
            lambda: TrainingRun.objects.filter(pk=run.pk).exclude(status="running").first(),
            second,
            second_log,
            timeout=400,
            interval=1,
        )
        assert done.status == "done", f"{done.error}\n{second_log.read_text()[-4000:]}"
        steps = [point["step"] for point in done.losses]
        assert steps == sorted(set(steps)) and steps[0] <= 10 and steps[-1] == 1500  # one curve, not restarted
        assert Generator.objects.get(pk=generator_id).status == "ready"
        print(f"Ctrl-C to exit: {took:.1f} s; stopped at step {stopped.step}; resumed from {resumed.resumed_step}")
    finally:
        for process in (first, second):
            if process is not None:
                stop_group(process)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_sigterm_to_a_worker_on_redis_hands_the_training_to_the_next_worker(real_broker, api, settings, tmp_path):
    """As a deploy stops a container: SIGTERM; the message goes back to Redis and another worker resumes at once."""
    settings.SYNTHGEN_TRAINING_OVERRIDES = LONG_TINY_RUN
    first, second = Worker(tmp_path / "a"), Worker(tmp_path / "b")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first.start()
    try:
        generator = start_run(api)
        run = wait_for(
            lambda: TrainingRun.objects.filter(generator_id=generator["id"], step__gte=120).first(),
            lambda r: r is not None,
            timeout=240,
            interval=0.2,
        )
        first.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        first.process.wait(timeout=15)
        took = time.monotonic() - sent
        stopped = TrainingRun.objects.get(pk=run.pk)
        assert (stopped.status, stopped.stage) == ("running", "train") and stopped.step < 1500
        assert redis.Redis.from_url(REDIS_URL).llen("gpu") == 1  # the train task, back in its queue
        second.start()  # another worker (no start-up sweep needed: the message itself is there)
        done = wait_for(lambda: TrainingRun.objects.get(pk=run.pk), lambda r: r.status != "running", timeout=300)
        assert done.status == "done", second.logs()
        assert done.resumed_step >= 100, done.resumed_step
        print(f"SIGTERM to exit: {took:.1f} s; stopped at step {stopped.step}; resumed from {done.resumed_step}")
    finally:
        first.stop()
        second.stop()
        print(first.logs(), second.logs())
