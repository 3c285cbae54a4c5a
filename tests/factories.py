"""Plain helpers shared by the Django-side tests (no fixtures: those are in tests/conftest.py): small real
images, API clients, uploads, runs and processes. Test modules import them from here, never from each other."""

from __future__ import annotations

import io
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image, ImageDraw
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.ml.ddim import DDIM
from apps.ml.engine.base import TrainResult

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- images and clients


def png_bytes(seed: int, size: int = 40, mode: str = "RGB") -> bytes:
    """A small real image: a coloured ellipse on a plain background, different for each seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (rng.randrange(200, 256),) * 3)
    draw = ImageDraw.Draw(image)
    x0, y0 = rng.randrange(2, size // 3), rng.randrange(2, size // 3)
    draw.ellipse(
        [x0, y0, size - rng.randrange(2, size // 3), size - rng.randrange(2, size // 3)],
        fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)),
    )
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def image_uploads(count: int, start: int = 0) -> list[SimpleUploadedFile]:
    return [
        SimpleUploadedFile(f"img{start + i}.png", png_bytes(start + i), content_type="image/png") for i in range(count)
    ]


def token_client(user) -> APIClient:
    """An API client that authenticates as ``user`` with its token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


# ---------------------------------------------------------------- datasets and generators through the API


def upload(api, count=8, name="ellipses", extra=()):
    """POST a dataset of ``count`` ellipses (and the files in ``extra``); the response."""
    return api.post("/api/datasets/", {"name": name, "images": [*image_uploads(count), *extra]}, format="multipart")


def labelled_zip(classes: dict[str, int], start: int = 0) -> SimpleUploadedFile:
    """A zip with a folder per class holding that many ellipses."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        seed = start
        for name, count in classes.items():
            for _ in range(count):
                archive.writestr(f"{name}/{seed}.png", png_bytes(seed))
                seed += 1
    return SimpleUploadedFile("set.zip", buffer.getvalue(), content_type="application/zip")


def upload_dataset(
    api, name: str, classes: dict[str, int] | None = None, *, count: int = 6, start: int = 0, mode: str = "RGB"
) -> int:
    """Create a dataset through the API (labelled, a folder per class, when ``classes`` is given); its id."""
    if classes:
        body = {"name": name, "labelled": "true", "archive": labelled_zip(classes, start)}
    else:
        body = {
            "name": name,
            "images": [
                SimpleUploadedFile(f"i{start + i}.png", png_bytes(start + i, mode=mode), content_type="image/png")
                for i in range(count)
            ],
        }
    response = api.post("/api/datasets/", body, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def train(api, capture, **body) -> dict:
    """Train a generator through the API, the pipeline run eagerly by ``capture`` (on-commit callbacks); the
    ready generator."""
    body = {"resolution": 32, "preset": "quick", **body}
    with capture(execute=True):
        response = api.post("/api/generators/", body, format="json")
    assert response.status_code == 202, response.content
    generator = api.get(f"/api/generators/{response.json()['id']}/").json()
    assert generator["status"] == "ready", generator
    return generator


class NoTraining(DDIM):
    """DDIM's config and model, without the training (only the chosen config matters here)."""

    trained_on: list[int] = []

    def train(self, images, *, checkpoint_dir, on_progress=None, should_stop=None, labels=None):
        self.trained_on.append(len(images))
        return TrainResult(steps=self.config["total_steps"], seconds=0.0)

    def save(self, directory):
        pass


# ---------------------------------------------------------------- runs on a real worker

LONG_TINY_RUN = {
    "dcgan": {"total_steps": 1500, "batch_size": 8, "ngf": 4, "ndf": 4, "checkpoint_every": 50, "report_every": 10}
}


def start_run(api, augment=False) -> dict:
    """Upload 8 ellipses and start a quick 32 px DCGAN on them; the generator as the API returned it."""
    dataset = api.post("/api/datasets/", {"name": "ellipses", "images": image_uploads(8)}, format="multipart")
    assert dataset.status_code == 201, dataset.content
    response = api.post(
        "/api/generators/",
        {
            "name": "ellipses",
            "dataset": dataset.json()["id"],
            "kind": "dcgan",
            "resolution": 32,
            "augment": augment,
            "preset": "quick",
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    return response.json()


def run_of(api, generator: dict) -> dict:
    """The current run of ``generator``, as the API returns it."""
    run_id = api.get(f"/api/generators/{generator['id']}/").json()["run"]
    return api.get(f"/api/runs/{run_id}/").json()


# ---------------------------------------------------------------- commands


def check_storage_command(*args: str) -> tuple[int, str, str]:
    """`manage.py check_storage ARGS` as a script runs it: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("check_storage", *args, stdout=out, stderr=err)
        status = 0
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    return status, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make(target: str, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    """`make TARGET` in its own process group, with this virtualenv taken as installed."""
    venv = sys.prefix
    return subprocess.Popen(
        ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/.installed", target, *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def deploy_env(folder: Path, **extra: str) -> dict[str, str]:
    """What every process of a deploy started with `make` gets: the same variables, the production settings (no
    DJANGO_SETTINGS_MODULE), the test's PostgreSQL and Redis, local state under ``folder``; ``extra`` on top."""
    from tests.realworker import REDIS_URL, database_url

    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "SYNTHGEN_", "CELERY_"))}
    env.update(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=REDIS_URL,
        SYNTHGEN_VAR_DIR=str(folder / "var"),
        SYNTHGEN_MEDIA_ROOT=str(folder / "media"),
        DJANGO_STATIC_ROOT=str(folder / "static"),
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


def stop_process(process: subprocess.Popen) -> None:
    """Stop a process started by :func:`make` and its children (SIGTERM, then SIGKILL after 30 s)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
