"""A folder of photos through the whole app, in one process: upload, the training chain, the quality report.

It uses the app's own services and pipeline (the Celery chain run eagerly) on a throwaway SQLite
database and media folder, so the report is exactly what a user of ``make run`` would get; it
prints the verdict, the explanation and the main numbers, and writes the whole report as JSON.

    .venv/bin/python bench/app_report.py --images ../shared/datasets/emoji-google/food_and_drink \\
        --kind dcgan --resolution 64 --preset quick --json bench/out/emoji_food.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="a folder of photos of one class")
    parser.add_argument("--kind", default="dcgan")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="write the whole quality report here")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="synthgen-app-report-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "synthgen.settings.dev",
            "DATABASE_URL": f"sqlite:///{scratch}/db.sqlite3",
            "SYNTHGEN_MEDIA_ROOT": str(scratch / "media"),
            "SYNTHGEN_WORK_DIR": str(scratch / "work"),
            "CELERY_TASK_ALWAYS_EAGER": "true",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.datasets import services as dataset_services
    from apps.generators import services
    from apps.generators.models import Generator, TrainingRun

    user = get_user_model().objects.create_user(username="bench", password="bench-password-1")
    files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(args.images.iterdir()) if p.is_file()]
    dataset, rejected = dataset_services.create_dataset(owner=user, name=args.images.name, files=files)
    print(f"{dataset.images.count()} images uploaded, {len(rejected)} rejected", flush=True)
    started = time.perf_counter()
    generator = services.start_training(
        owner=user,
        name=args.images.name,
        dataset=dataset,
        kind=args.kind,
        resolution=args.resolution,
        preset=args.preset,
        augment=not args.no_augment,
    )
    generator = Generator.objects.get(pk=generator.pk)  # in autocommit the eager chain has run already
    run = TrainingRun.objects.filter(generator=generator).latest("created_at")
    print(
        f"status {generator.status} after {time.perf_counter() - started:.0f} s; stages {run.completed_stages}; "
        f"error {run.error or '-'}",
        flush=True,
    )
    quality = generator.quality or {}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(quality, indent=1))
    number = lambda k: quality.get(k, {}).get("value")  # noqa: E731
    reference = lambda k: quality.get(k, {}).get("reference")  # noqa: E731
    print(f"verdict: {quality.get('verdict')}\n{quality.get('explanation')}\n{quality.get('advice')}")
    for key in ("precision", "coverage", "recall", "density", "swd", "fid", "kid"):
        print(f"  {key:10s} {number(key)}  (new real photos: {reference(key)})")
    for key in ("copy_share", "memorisation", "noise_share", "diversity"):
        print(f"  {key:10s} {number(key)}")
    credit = (quality.get("usefulness") or {}).get("credit") or {}
    words = credit.get("words") or credit.get("reason")
    print(f"  credit     {credit.get('value')} [{credit.get('low')}, {credit.get('high')}] {words}")
    print(f"  negatives  {quality.get('negatives')}")
    print(f"scratch folder (database, media): {scratch}")


if __name__ == "__main__":
    main()
