"""The processes started apart (README "Running on several machines"), each run as `make TARGET` with a
deploy's environment: `make web` serves pages, the API and static files over HTTP with the production
settings; `make worker QUEUES=gpu` consumes that queue only; `make beat` sends the stale-run sweep and the
storage check."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import redis
import requests
from rest_framework.authtoken.models import Token

from synthgen.celery import app as celery_app
from tests.factories import deploy_env, free_port, make, stop_process
from tests.realworker import REDIS_URL

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
HTTPS = {"X-Forwarded-Proto": "https"}  # as the TLS-terminating proxy in front of gunicorn says


def poll(fetch, process: subprocess.Popen, log: Path, timeout: float = 90):
    """fetch() until it returns something truthy; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the process exited:\n{log.read_text()[-3000:]}"
        value = fetch()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s:\n{log.read_text()[-3000:]}")


def test_make_web_serves_pages_api_and_static_files(user, tmp_path):
    port = free_port()
    log = tmp_path / "web.log"
    web = make("web", deploy_env(tmp_path, PORT=str(port)), log)
    base = f"http://127.0.0.1:{port}"

    def get(path: str, **kwargs) -> requests.Response | None:
        try:  # the first answer waits for gunicorn's worker to load the application
            return requests.get(base + path, timeout=30, allow_redirects=False, **kwargs)
        except requests.ConnectionError:  # not listening yet
            return None

    try:
        home = poll(lambda: get("/", headers=HTTPS), web, log)
        assert home.status_code == 200 and "SynthGen" in home.text
        assert get("/").status_code == 301  # the production settings: plain http is sent to https
        static = get("/static/js/live.js", headers=HTTPS)
        assert static.status_code == 200, static.text[:500]
        assert static.content == (ROOT / "static" / "js" / "live.js").read_bytes()
        token = Token.objects.create(user=user).key  # the database is the test's own
        datasets = get("/api/datasets/", headers={**HTTPS, "Authorization": f"Token {token}"})
        assert datasets.status_code == 200 and datasets.json()["count"] == 0
    finally:
        stop_process(web)


def test_make_worker_consumes_only_its_queues_and_make_beat_sends_the_sweep(real_broker, tmp_path):
    env = deploy_env(tmp_path, SYNTHGEN_SWEEP_SECONDS="1", SYNTHGEN_STORAGE_CHECK_SECONDS="1")
    worker = make("worker", env, tmp_path / "worker.log", "QUEUES=gpu")
    beat = make("beat", env, tmp_path / "beat.log")
    try:
        replies = poll(lambda: celery_app.control.inspect(timeout=1).active_queues(), worker, tmp_path / "worker.log")
        assert [[queue["name"] for queue in queues] for queues in replies.values()] == [["gpu"]]

        # Beat sends the sweep and the storage check to `default`; the gpu-only worker leaves them there.
        def sent() -> set[str]:
            queued = redis.Redis.from_url(REDIS_URL).lrange("default", 0, -1)
            tasks = {json.loads(message)["headers"]["task"] for message in queued}
            return tasks if {"generators.sweep_stale_runs", "upkeep.check_storage"} <= tasks else set()

        assert poll(sent, beat, tmp_path / "beat.log") == {"generators.sweep_stale_runs", "upkeep.check_storage"}
    finally:
        stop_process(beat)
        stop_process(worker)
