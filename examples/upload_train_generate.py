#!/usr/bin/env python3
"""From a folder of images to a zip of generated ones, over SynthGen's REST API.

    python examples/upload_train_generate.py --url http://127.0.0.1:8000 --user admin --password PASS \
        --images ../shared/datasets/fashion-mnist/train/sandal --kind dcgan --count 500 --out sandals.zip

Prints how long each step took. Needs only `requests`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import requests

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--images", required=True, type=Path, help="a folder of images of one thing")
    parser.add_argument("--limit", type=int, default=0, help="upload only the first N images (0 = all)")
    parser.add_argument("--kind", default="dcgan")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("generated.zip"))
    args = parser.parse_args()

    api = args.url.rstrip("/") + "/api"
    session = requests.Session()
    token = session.post(f"{api}/auth/token/", data={"username": args.user, "password": args.password})
    token.raise_for_status()
    session.headers["Authorization"] = f"Token {token.json()['token']}"
    timings: list[tuple[str, float]] = []

    started = time.perf_counter()
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    paths = paths[: args.limit] if args.limit else paths
    dataset = None
    for start in range(0, len(paths), 100):  # 100 files per request
        files = [("images", (p.name, p.read_bytes())) for p in paths[start : start + 100]]
        if dataset is None:
            response = session.post(f"{api}/datasets/", data={"name": args.images.name}, files=files)
        else:
            response = session.post(f"{api}/datasets/{dataset['id']}/images/", files=files)
        if response.status_code not in (200, 201):
            sys.exit(f"upload failed: {response.status_code} {response.text}")
        dataset = dataset or response.json()
        for rejected in response.json().get("rejected", []):
            print(f"  rejected {rejected['file']}: {rejected['reason']}")
    dataset = session.get(f"{api}/datasets/{dataset['id']}/").json()
    timings.append((f"upload {dataset['image_count']} images", time.perf_counter() - started))

    started = time.perf_counter()
    generator = session.post(
        f"{api}/generators/",
        json={
            "name": args.images.name,
            "dataset": dataset["id"],
            "kind": args.kind,
            "resolution": args.resolution,
            "augment": args.augment,
            "preset": args.preset,
        },
    )
    if generator.status_code != 202:
        sys.exit(f"training refused: {generator.status_code} {generator.text}")
    generator = generator.json()
    last_line = ""
    while generator["status"] in ("queued", "training"):
        time.sleep(2)
        generator = session.get(f"{api}/generators/{generator['id']}/").json()
        progress = generator["progress"] or {}
        line = f"  {generator['status']} / {generator['stage']}: step {progress.get('step')} of {progress.get('total')}"
        if line != last_line:
            print(line, f"(eta {progress.get('eta_seconds')} s)", flush=True)
            last_line = line
    if generator["status"] != "ready":
        sys.exit(f"training ended {generator['status']}: {generator['error']}")
    timings.append((f"train {args.kind} {args.resolution}px {args.preset}", time.perf_counter() - started))
    quality = generator.get("quality") or {}
    print(f"  verdict: {quality.get('verdict')} - {quality.get('explanation')}")
    print(f"  sample grid: {generator['sample_grid_url']}")

    started = time.perf_counter()
    job = session.post(f"{api}/generators/{generator['id']}/generate/", json={"count": args.count, "seed": args.seed})
    job.raise_for_status()
    job = job.json()
    while job["status"] in ("queued", "running"):
        time.sleep(1)
        job = session.get(f"{api}/jobs/{job['id']}/").json()
    if job["status"] != "done":
        sys.exit(f"generation failed: {job['error']}")
    with session.get(job["download_url"], stream=True) as download:
        download.raise_for_status()
        with open(args.out, "wb") as fh:
            for chunk in download.iter_content(1 << 20):
                fh.write(chunk)
    timings.append(
        (f"generate {job['produced']} images ({job['dropped']} dropped) + zip", time.perf_counter() - started)
    )

    print(f"\n{'step':<45} {'seconds':>9}")
    for name, seconds in timings:
        print(f"{name:<45} {seconds:>9.1f}")
    print(f"{'total':<45} {sum(s for _, s in timings):>9.1f}")
    print(f"zip: {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
