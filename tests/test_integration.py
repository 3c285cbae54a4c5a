"""The whole chain through a real Celery worker process, on the real Redis broker and PostgreSQL.

Upload (multipart over the API) -> prepare -> augment -> train -> register -> cleanup -> generate -> zip.
"""
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from synthgen.celery import app as celery_app

from .conftest import TINY_TRAINING, image_uploads

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("SYNTHGEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_real_services():
    if connection.vendor != "postgresql":
        pytest.fail("The integration test needs PostgreSQL: run it through `make test` (it sets DATABASE_URL).")
    import redis

    redis.Redis.from_url(REDIS_URL).ping()  # fails loudly when Redis is down


@pytest.fixture
def real_broker():
    """Point this process's Celery app at Redis and stop running tasks eagerly."""
    require_real_services()
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    old = (celery_app.conf.broker_url, celery_app.conf.task_always_eager)
    celery_app.conf.broker_url = REDIS_URL
    celery_app.conf.task_always_eager = False
    yield REDIS_URL
    celery_app.conf.broker_url, celery_app.conf.task_always_eager = old
    celery_app.pool.force_close_all()


@pytest.fixture
def worker(real_broker, settings, tmp_path):
    """A real `celery worker` process sharing this test's database, media and work folders."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "synthgen.settings.test",
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": real_broker,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "SYNTHGEN_TRAINING_OVERRIDES": __import__("json").dumps(TINY_TRAINING),
        "SYNTHGEN_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "SYNTHGEN_WORK_DIR": str(settings.SYNTHGEN_WORK_DIR),
        "SYNTHGEN_DEVICE": "cpu",
    }
    log = open(tmp_path / "worker.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "synthgen", "worker", "-Q", "default,gpu", "--pool", "solo",
         "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    print((tmp_path / "worker.log").read_text()[-4000:])


def wait_for(fetch, done, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if done(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out; last state: {value}")


def test_upload_to_zip_through_a_real_worker(worker, api, settings):
    created = api.post("/api/datasets/", {"name": "ellipses", "images": image_uploads(10)}, format="multipart")
    assert created.status_code == 201, created.content
    response = api.post(
        "/api/generators/",
        {"name": "ellipses", "dataset": created.json()["id"], "kind": "dcgan", "resolution": 32, "augment": True,
         "preset": "quick"},
        format="json",
    )
    assert response.status_code == 202, response.content
    generator = wait_for(lambda: api.get(f"/api/generators/{response.json()['id']}/").json(),
                         lambda g: g["status"] in ("ready", "failed"))
    assert generator["status"] == "ready", generator
    run = api.get(f"/api/runs/{generator['run']}/").json()
    assert run["status"] == "done" and run["device"] == "cpu"
    assert not (Path(settings.SYNTHGEN_WORK_DIR) / "runs" / str(run["id"])).exists()  # cleanup ran

    job = api.post(f"/api/generators/{generator['id']}/generate/", {"count": 12, "seed": 5}, format="json")
    assert job.status_code == 202, job.content
    job = wait_for(lambda: api.get(f"/api/jobs/{job.json()['id']}/").json(), lambda j: j["status"] in ("done", "failed"))
    assert job["status"] == "done", job
    archive = zipfile.ZipFile(io.BytesIO(b"".join(api.get(job["download_url"]).streaming_content)))
    assert len([n for n in archive.namelist() if n.endswith(".png")]) == 12
