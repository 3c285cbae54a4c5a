"""Two hosts on one machine: the web (this test process) and Celery workers that share nothing but
PostgreSQL, the broker (Redis, and again RabbitMQ) and the S3 storage (a real SeaweedFS): each has its own
SYNTHGEN_WORK_DIR and its own, empty, SYNTHGEN_MEDIA_ROOT; one consumes `default`, one `gpu`. The gpu worker
is killed (SIGKILL) in the middle of training and a third worker, with a third work dir, resumes from the
checkpoint in storage. All of them run under this machine's host name, and the web is this test process:
tests/system/test_host_names.py runs the web as `make web` and gives each worker a host name of its own."""

import io
import zipfile
from pathlib import Path

import pytest

from apps.core import storage
from apps.generators.models import TrainingRun
from tests.factories import LONG_TINY_RUN, image_uploads, run_of
from tests.realworker import AMQP_URL, REDIS_URL, Worker, use_real_broker, wait_for


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _host(
    tmp_path: Path, name: str, seaweedfs, prefix: str, queues: tuple[str, ...], broker: str = REDIS_URL
) -> Worker:
    folder = tmp_path / name
    (folder / "logs").mkdir(parents=True)
    return Worker(
        folder / "logs",
        {
            **seaweedfs.env(prefix),
            "SYNTHGEN_WORK_DIR": str(folder / "work"),
            "SYNTHGEN_MEDIA_ROOT": str(folder / "media"),
            "CELERY_BROKER_URL": broker,
        },
        queues=queues,
    )


@pytest.fixture(params=["redis", "rabbitmq"])
def any_broker(request):
    """The Celery app (and the workers) on Redis, then on RabbitMQ."""
    url = {"redis": REDIS_URL, "rabbitmq": AMQP_URL}[request.param]
    undo = use_real_broker(url)
    yield url
    undo()


def _ran(worker: Worker, task: str) -> bool:
    return f"Task {task}[" in "\n".join(p.read_text() for p in worker.log_dir.glob("worker-*.log"))


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_stages_run_on_two_hosts_through_s3_and_training_resumes_on_a_third(
    any_broker, s3_storage, seaweedfs, api, settings, tmp_path
):
    settings.SYNTHGEN_TRAINING_OVERRIDES = LONG_TINY_RUN
    cpu = _host(tmp_path, "cpu-host", seaweedfs, s3_storage, ("default",), any_broker).start()
    gpu = _host(tmp_path, "gpu-host", seaweedfs, s3_storage, ("gpu",), any_broker).start()
    spare = _host(tmp_path, "spare-gpu-host", seaweedfs, s3_storage, ("gpu",), any_broker)
    try:
        dataset = api.post("/api/datasets/", {"name": "ellipses", "images": image_uploads(8)}, format="multipart")
        assert dataset.status_code == 201, dataset.content
        generator = api.post(
            "/api/generators/",
            {
                "name": "ellipses",
                "dataset": dataset.json()["id"],
                "kind": "dcgan",
                "resolution": 32,
                "augment": True,
                "preset": "quick",
            },
            format="json",
        ).json()
        before = wait_for(
            lambda: run_of(api, generator), lambda r: r["progress"]["step"] >= 300, timeout=240, interval=0.2
        )
        gpu.kill()
        run = TrainingRun.objects.get(pk=before["id"])
        assert run.status == "running" and run.stage == "train" and run.step < 1500
        checkpoint = storage.run_file(run.pk, "checkpoints/checkpoint.safetensors")
        assert storage.exists(checkpoint)  # published at each checkpoint, not only on the gpu host's disk

        spare.start()  # its start-up sweep takes the stage of the dead process over
        done = wait_for(lambda: run_of(api, generator), lambda r: r["status"] in ("done", "failed"), timeout=300)
        assert done["status"] == "done", spare.logs() + cpu.logs()
        run = TrainingRun.objects.get(pk=run.pk)
        assert run.resumed_step >= 50, run.resumed_step  # from the stored checkpoint, on another work dir
        steps = [point["step"] for point in run.losses]
        assert steps == sorted(set(steps)) and steps[-1] == 1500

        job = api.post(
            f"/api/generators/{generator['id']}/generate/", {"count": 12, "seed": 1, "filter": False}, format="json"
        )
        job = wait_for(
            lambda: api.get(f"/api/jobs/{job.json()['id']}/").json(),
            lambda j: j["status"] != "queued" and j["status"] != "running",
            timeout=120,
        )
        assert job["status"] == "done", job
        archive = zipfile.ZipFile(io.BytesIO(b"".join(api.get(job["download_url"]).streaming_content)))
        assert len([n for n in archive.namelist() if n.endswith(".png")]) == 12
    finally:
        for worker in (cpu, gpu, spare):
            worker.stop()

    # Which host ran what: the cpu host the default stages, the gpu hosts training, the report and generation.
    for task in ("generators.prepare", "generators.augment", "generators.register", "generators.cleanup"):
        assert _ran(cpu, task) and not _ran(gpu, task) and not _ran(spare, task), task
    assert _ran(gpu, "generators.train") and not _ran(gpu, "generators.evaluate")
    for task in ("generators.train", "generators.evaluate", "generation.generate"):
        assert _ran(spare, task) and not _ran(cpu, task), task

    # Nothing under any local media folder; the scratch folders of the living hosts are empty; only the
    # killed host's train scratch is left (a SIGKILL skips `finally`), and the stored run files went with cleanup.
    for host in ("cpu-host", "gpu-host", "spare-gpu-host"):
        assert _files(tmp_path / host / "media") == [], host
    assert _files(settings.MEDIA_ROOT) == []
    assert _files(tmp_path / "cpu-host" / "work") == [] and _files(tmp_path / "spare-gpu-host" / "work") == []
    left = _files(tmp_path / "gpu-host" / "work")
    assert left and all(name.startswith(f"scratch/run{run.pk}-train-") for name in left), left
    gpu.start()  # a worker starting on that host removes what the killed process left there
    try:
        wait_for(lambda: _files(tmp_path / "gpu-host" / "work"), lambda files: files == [], timeout=60)
    finally:
        gpu.stop()
    assert seaweedfs.keys(f"{s3_storage}/runs/") == []
    assert seaweedfs.keys(f"{s3_storage}/jobs/") and seaweedfs.keys(f"{s3_storage}/generators/")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_storage_down_in_the_middle_of_training_the_stage_retries_and_resumes(
    real_broker, s3_storage, seaweedfs, api, settings, tmp_path
):
    """SeaweedFS stops while a real worker trains: the next checkpoint cannot be published, the train task
    retries with back-off, and once the storage is back it resumes from the last stored checkpoint."""
    settings.SYNTHGEN_TRAINING_OVERRIDES = LONG_TINY_RUN
    worker = _host(tmp_path, "host", seaweedfs, s3_storage, ("default", "gpu"))
    worker.env.update({"SYNTHGEN_STORAGE_RETRY_SECONDS": "1", "SYNTHGEN_STORAGE_RETRIES": "8"})
    worker.start()
    try:
        dataset = api.post("/api/datasets/", {"name": "ellipses", "images": image_uploads(8)}, format="multipart")
        generator = api.post(
            "/api/generators/",
            {"name": "ellipses", "dataset": dataset.json()["id"], "kind": "dcgan", "resolution": 32, "preset": "quick"},
            format="json",
        ).json()
        wait_for(lambda: run_of(api, generator), lambda r: r["progress"]["step"] >= 200, timeout=240, interval=0.2)
        seaweedfs.stop()
        wait_for(worker.logs, lambda logs: "retrying in" in logs, timeout=60)
        run = TrainingRun.objects.get(pk=run_of(api, generator)["id"])
        assert run.status == "running" and run.stage == "train"  # waiting for the storage, not failed
        seaweedfs.start()
        done = wait_for(lambda: run_of(api, generator), lambda r: r["status"] in ("done", "failed"), timeout=300)
        assert done["status"] == "done", worker.logs()
        run = TrainingRun.objects.get(pk=run.pk)
        assert run.resumed_step >= 200 and run.attempts == 1, (run.resumed_step, run.attempts)
        steps = [point["step"] for point in run.losses]
        assert steps == sorted(set(steps)) and steps[-1] == 1500
        assert "The file storage (S3 bucket 'synthgen-test-" in worker.logs()
    finally:
        worker.stop()
        if seaweedfs.process.poll() is not None:
            seaweedfs.start()
