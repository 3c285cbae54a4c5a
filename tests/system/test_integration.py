"""The whole chain through a real Celery worker process, on the real Redis broker and PostgreSQL.

Upload (multipart over the API) -> prepare -> augment -> train -> register -> cleanup -> generate -> zip.
"""

import io
import re
import zipfile
from pathlib import Path

import pytest

from apps.core import storage
from tests.factories import image_uploads
from tests.realworker import Worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_upload_to_zip_through_a_real_worker(worker, api, settings):
    created = api.post("/api/datasets/", {"name": "ellipses", "images": image_uploads(10)}, format="multipart")
    assert created.status_code == 201, created.content
    response = api.post(
        "/api/generators/",
        {
            "name": "ellipses",
            "dataset": created.json()["id"],
            "kind": "dcgan",
            "resolution": 32,
            "augment": True,
            "preset": "quick",
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    generator = wait_for(
        lambda: api.get(f"/api/generators/{response.json()['id']}/").json(),
        lambda g: g["status"] in ("ready", "failed"),
    )
    assert generator["status"] == "ready", generator
    # The generator is ready after register; the run is done after cleanup, a moment later.
    run = wait_for(lambda: api.get(f"/api/runs/{generator['run']}/").json(), lambda r: r["status"] != "running")
    assert run["status"] == "done" and run["device"] == "cpu"
    assert storage.walk(storage.run_prefix(run["id"])) == []  # cleanup ran
    assert list((Path(settings.SYNTHGEN_WORK_DIR) / "scratch").iterdir()) == []  # every stage's scratch removed

    job = api.post(
        f"/api/generators/{generator['id']}/generate/", {"count": 12, "seed": 5, "filter": False}, format="json"
    )
    assert job.status_code == 202, job.content
    job = wait_for(
        lambda: api.get(f"/api/jobs/{job.json()['id']}/").json(), lambda j: j["status"] in ("done", "failed")
    )
    assert job["status"] == "done", job
    archive = zipfile.ZipFile(io.BytesIO(b"".join(api.get(job["download_url"]).streaming_content)))
    assert len([n for n in archive.namelist() if n.endswith(".png")]) == 12


def test_training_through_a_real_worker_on_rabbitmq(rabbitmq_broker, s3_storage, seaweedfs, api, settings, tmp_path):
    """RabbitMQ (amqp://) as the broker and S3 (SeaweedFS) as the storage: the chain goes through both queues
    and the generator comes back ready, with nothing under the local media folders."""
    worker = Worker(
        tmp_path,
        {
            "CELERY_BROKER_URL": rabbitmq_broker,
            **seaweedfs.env(s3_storage),
            "SYNTHGEN_MEDIA_ROOT": str(tmp_path / "worker-media"),
        },
    ).start()
    try:
        created = api.post("/api/datasets/", {"name": "ellipses", "images": image_uploads(8)}, format="multipart")
        assert created.status_code == 201, created.content
        response = api.post(
            "/api/generators/",
            {"name": "ellipses", "dataset": created.json()["id"], "kind": "dcgan", "resolution": 32, "preset": "quick"},
            format="json",
        )
        assert response.status_code == 202, response.content
        generator = wait_for(
            lambda: api.get(f"/api/generators/{response.json()['id']}/").json(),
            lambda g: g["status"] in ("ready", "failed"),
        )
        assert generator["status"] == "ready", worker.logs()
        assert re.search(r"transport: +amqp://", (tmp_path / "worker-1.log").read_text())  # really on RabbitMQ
        assert seaweedfs.keys(f"{s3_storage}/generators/{generator['id']}/")
        assert not any(
            p.is_file() for folder in (settings.MEDIA_ROOT, tmp_path / "worker-media") for p in Path(folder).rglob("*")
        )
    finally:
        worker.stop()
