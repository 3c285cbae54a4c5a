"""Faults: a killed worker, a lost queue, a cancel, a task delivered twice. Real worker, Redis, PostgreSQL."""

import os
import socket
import subprocess
import sys

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from apps.core import storage
from apps.generators import tasks
from apps.generators.models import Generator, TrainingRun
from apps.generators.runs import lease_holder, run_stage
from apps.generators.stages import data, finish, quality, training
from tests.factories import LONG_TINY_RUN, run_of, start_run
from tests.realworker import REDIS_URL, Worker, wait_for

STALE = {"SYNTHGEN_STALE_RUN_SECONDS": "2"}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_killed_worker_resumes_from_its_last_checkpoint(real_broker, api, settings, tmp_path):
    settings.SYNTHGEN_TRAINING_OVERRIDES = LONG_TINY_RUN
    worker = Worker(tmp_path).start()  # the stale timeout stays at 300 s: a restart here must not wait for it
    try:
        generator = start_run(api)
        before = wait_for(
            lambda: run_of(api, generator), lambda r: r["progress"]["step"] >= 300, timeout=240, interval=0.2
        )
        worker.kill()
        killed_at = TrainingRun.objects.get(pk=before["id"])
        assert killed_at.status == "running" and killed_at.stage == "train"
        assert killed_at.step < 1500, "training finished before the kill; make the run longer"
        worker.start()  # its start-up sweep sees the holder, a process of this host, gone: re-queued at once
        done = wait_for(lambda: run_of(api, generator), lambda r: r["status"] in ("done", "failed"), timeout=300)
        assert done["status"] == "done", worker.logs()
        run = TrainingRun.objects.get(pk=before["id"])
        steps = [point["step"] for point in run.losses]
        assert steps == sorted(set(steps)), "the loss curve must not restart from zero"
        assert steps[0] <= 50 and steps[-1] == 1500
        # The second attempt started from a checkpoint, not from step 0: early points of attempt 1 remain.
        assert run.resumed_step >= 50, run.resumed_step
        assert Generator.objects.get(pk=generator["id"]).status == "ready"
    finally:
        worker.stop()
        print(worker.logs())


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_queued_message_was_lost_is_requeued(real_broker, api, settings, tmp_path):
    generator = start_run(api)  # queued in Redis; no worker is running yet
    redis.Redis.from_url(REDIS_URL).flushdb()  # the broker restarts without its queue
    import time

    time.sleep(3)
    worker = Worker(tmp_path, STALE).start()
    try:
        done = wait_for(lambda: run_of(api, generator), lambda r: r["status"] in ("done", "failed"), timeout=240)
        assert done["status"] == "done", worker.logs()
    finally:
        worker.stop()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_cancel_stops_training_and_frees_its_files(real_broker, api, settings, tmp_path):
    settings.SYNTHGEN_TRAINING_OVERRIDES = LONG_TINY_RUN
    worker = Worker(tmp_path).start()
    try:
        generator = start_run(api)
        run = wait_for(
            lambda: run_of(api, generator), lambda r: r["progress"]["step"] >= 100, timeout=240, interval=0.2
        )
        assert api.post(f"/api/runs/{run['id']}/cancel/").status_code == 200
        cancelled = wait_for(lambda: run_of(api, generator), lambda r: r["status"] != "running", timeout=60)
        assert cancelled["status"] == "cancelled"
        assert cancelled["progress"]["step"] < 1500
        assert api.get(f"/api/generators/{generator['id']}/").json()["status"] == "cancelled"
        assert storage.walk(storage.run_prefix(run["id"])) == []
    finally:
        worker.stop()


@pytest.mark.django_db
def test_a_stage_delivered_twice_does_nothing_the_second_time(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        generator = start_run(api)
    run = TrainingRun.objects.get(generator_id=generator["id"])
    assert run.status == "done"
    ready = Generator.objects.get(pk=generator["id"])
    for stage in (
        data.prepare,
        data.augment,
        training.train,
        quality.evaluate,
        finish.register,
        finish.cleanup,
    ):
        assert stage(run.pk) is False
    assert Generator.objects.get(pk=generator["id"]).updated_at == ready.updated_at
    assert TrainingRun.objects.get(pk=run.pk).attempts == run.attempts


@pytest.mark.django_db
def test_a_stage_held_by_a_live_worker_is_not_run_again(api, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("apps.generators.services.launch_pipeline", lambda run_id: None)  # queue nothing
    generator = start_run(api)
    run = TrainingRun.objects.get(generator_id=generator["id"])
    assert data.prepare(run.pk) and data.augment(run.pk)
    TrainingRun.objects.filter(pk=run.pk).update(stage="train", heartbeat_at=timezone.now(), holder="elsewhere:1")
    assert training.train(run.pk) is False
    assert finish.register(run.pk) is False  # train is not done: a leftover message skips
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timezone.timedelta(hours=1))
    assert training.train(run.pk) is True  # the holder died: taken over
    assert TrainingRun.objects.get(pk=run.pk).holder == lease_holder()


@pytest.mark.django_db
def test_a_generator_deleted_while_its_chain_runs_leaves_no_error_and_no_files(api, monkeypatch):
    """Deleting a generator whose chain is under way: its leftover messages are skipped (before, the next stage
    raised DoesNotExist in the worker), a stage running at that moment stops without failing, and what it
    stored after the deletion is removed, not orphaned."""
    monkeypatch.setattr("apps.generators.services.launch_pipeline", lambda run_id: None)  # queue nothing
    generator = start_run(api)
    run = TrainingRun.objects.get(generator_id=generator["id"])
    assert data.prepare(run.pk)

    def stores_then_its_generator_is_deleted(run, work):
        storage.write_bytes(storage.run_file(run.pk, "late.bin"), b"x")
        storage.write_bytes(storage.generator_file(run.generator_id, "late.bin"), b"x")
        assert api.delete(f"/api/generators/{generator['id']}/").status_code == 204

    assert run_stage(run.pk, "augment", stores_then_its_generator_is_deleted) is False
    assert storage.walk(storage.run_prefix(run.pk)) == []
    assert storage.walk(storage.generator_prefix(generator["id"])) == []
    for stage in (data.augment, training.train, quality.evaluate, finish.register, finish.cleanup):
        assert stage(run.pk) is False  # the rest of the chain: skipped, no exception
    assert not TrainingRun.objects.filter(pk=run.pk).exists()


@pytest.mark.django_db
def test_training_stops_when_its_generator_is_deleted(api, monkeypatch):
    monkeypatch.setattr("apps.generators.services.launch_pipeline", lambda run_id: None)
    generator = start_run(api)
    run = TrainingRun.objects.get(generator_id=generator["id"])
    recorder = training._ProgressRecorder(run)
    recorder.last_stop_check = -1e9
    assert recorder.should_stop() is False
    Generator.objects.filter(pk=generator["id"]).delete()
    recorder.last_stop_check = -1e9
    assert recorder.should_stop() is True


@pytest.mark.django_db
def test_a_starting_worker_takes_over_at_once_the_stages_of_dead_processes_on_its_host(user, monkeypatch):
    """Restart without the wait: a stage whose holder process on this host is gone is re-queued by the
    worker's start-up hook and taken over although its heartbeat is fresh; a live process's stage, or
    another host's, waits for the stale timeout."""
    requeued = []
    monkeypatch.setattr("apps.generators.runs.launch_pipeline", requeued.append)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = socket.gethostname()
    try:
        runs = {}
        holders = {
            "dead": f"{host}:{dead.pid}:a1b2c3d4",
            "earlier process with this pid": f"{host}:{os.getpid()}:a1b2c3d4",  # a restarted container
            "alive": f"{host}:{alive.pid}:a1b2c3d4",
            "other host": f"elsewhere:{dead.pid}:a1b2c3d4",
        }
        for name, holder in holders.items():
            generator = Generator.objects.create(owner=user, name=name, kind="dcgan", resolution=32, preset="quick")
            runs[name] = TrainingRun.objects.create(
                generator=generator,
                status="running",
                stage="train",
                completed_stages=["prepare", "augment"],
                heartbeat_at=timezone.now(),
                holder=holder,
            )
        tasks._sweep_when_a_worker_starts()
        gone = sorted([runs["dead"].pk, runs["earlier process with this pid"].pk])
        assert sorted(requeued) == gone
        # The re-queued chains' train tasks take the leases over; the others stay held.
        taken = {name: run_stage(run.pk, "train", lambda run, work: None) for name, run in runs.items()}
        assert taken == {"dead": True, "earlier process with this pid": True, "alive": False, "other host": False}
        assert TrainingRun.objects.get(pk=runs["dead"].pk).holder == lease_holder()
        tasks._sweep_when_a_worker_starts()  # the new holder is this live process: nothing more to re-queue
        assert sorted(requeued) == gone
    finally:
        alive.kill()
        alive.wait()


def test_weights_are_never_unpickled():
    from pathlib import Path

    sources = Path(settings.BASE_DIR, "apps").rglob("*.py")
    offenders = [str(p) for p in sources if "torch.load(" in p.read_text() or "import pickle" in p.read_text()]
    assert offenders == []
