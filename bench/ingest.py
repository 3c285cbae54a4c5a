"""Ingest benchmark: how fast uploaded photos are checked, normalised and stored.

Cases (issue #2, "Done when"): (a) three 3000x2400 JPEG photos, which must take under 2 s;
(b) 500 JPEG photos of 12 MP (4000x3000). The photos are generated here with photo-like content
(smooth colour fields, shapes, texture and sensor-like noise, JPEG quality 90) into a temporary
folder, one at a time, so memory stays bounded.

Mode 1 (default), in-process: for each file, read its bytes, ``imaging.decode_image`` (full
decode in JPEG draft mode, checks, normalisation), then write the working PNG and the original
bytes to a temporary folder - what the upload service does per file, without Django.

Reference, measured in the same run: the naive way of the 2023 study - ``Image.open`` + full
``load()`` + a resize from the full-size image (no draft mode) + saving the full-size image as
PNG. For the 500-photo case it runs on the first ``--reference-limit`` photos only (it takes
seconds per photo); the table says so.

A second reference, also in the same run (issue #21): the plain loop - ``Image.open`` + full
``load()`` + the Lanczos resize to the working size, one photo after the other, nothing stored -
on the first ``--plain-limit`` photos.

Mode 2, ``--api URL --token T``: the same photos through the real HTTP API ``POST /api/datasets/``
(multipart ``name`` + repeated ``images``, header ``Authorization: Token T``): one request for
the 3 photos, and the 500 in requests of ``--batch`` (50) photos, each creating a dataset.

Mode 3, ``--serve``: mode 2 against a throwaway instance that this script starts itself, as
``make web`` runs it (gunicorn, one process of 8 threads; SQLite in a temporary folder, or
``--database-url postgres://...``, made for the run and dropped after it), with a user and token of
its own. Targets of issue #21 (printed): the 500 photos at >= 25 images/s on 2 cores, and >= 3x the
plain loop.

    python bench/ingest.py                      # mode 1
    python bench/ingest.py --count 100          # fewer 12 MP photos
    python bench/ingest.py --api http://127.0.0.1:8000 --token abc123
    python bench/ingest.py --serve              # mode 3
    python bench/ingest.py --serve --photos /tmp/ingest-photos   # photos kept for the next run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from apps.datasets.imaging import ImageLimits, decode_image, png_bytes  # noqa: E402

MB = 1024 * 1024


@dataclass
class Row:
    """One line of the result table."""

    case: str
    images: int
    megabytes: float
    seconds: float

    @property
    def per_second(self) -> float:
        return self.images / self.seconds if self.seconds else float("inf")


# --- photo generation ------------------------------------------------------------------------


class PhotoMaker:
    """Makes distinct photo-like RGB images of one size, cheaply enough for hundreds of 12 MP."""

    def __init__(self, width: int, height: int, seed: int):
        self.width, self.height = width, height
        self.rng = np.random.default_rng(seed)
        self.margin = 256
        # Sensor-like noise, made once; each photo takes a crop at a random offset.
        size = (height + self.margin, width + self.margin)
        self.noise = Image.merge("RGB", [self._noise_band(size, sigma=9.0) for _ in range(3)])

    def _noise_band(self, size: tuple[int, int], sigma: float) -> Image.Image:
        """One 'L' band of gaussian noise around 128 (float32, to keep memory small)."""
        band = self.rng.standard_normal(size, dtype=np.float32)
        band *= sigma
        band += 128.0
        np.clip(band, 0, 255, out=band)
        return Image.fromarray(band.astype(np.uint8))

    def make(self) -> Image.Image:
        rng, width, height = self.rng, self.width, self.height
        # Smooth light and colour falloff plus blotchy surface texture, built at 1/4 size.
        quarter = (width // 4, height // 4)
        colours = rng.integers(30, 226, (3, 4, 3), dtype=np.uint8)
        field = Image.fromarray(colours).resize(quarter, Image.Resampling.BICUBIC)
        coarse = rng.normal(128, 18, (height // 48, width // 48, 3))
        texture = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize(quarter, Image.Resampling.BICUBIC)
        image = ImageChops.add(field, texture, 1.0, -128).resize((width, height), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(image)
        for _ in range(14):  # objects with hard edges, at full resolution
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            w, h = int(rng.integers(width // 20, width // 3)), int(rng.integers(height // 20, height // 3))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse((x, y, x + w, y + h), fill=colour)
            else:
                draw.rectangle((x, y, x + w, y + h), fill=colour)
        dx, dy = (int(v) for v in rng.integers(0, self.margin, 2))
        noise = self.noise.crop((dx, dy, dx + width, dy + height))
        return ImageChops.add(image, noise, 1.0, -128)


def write_photos(folder: Path, count: int, width: int, height: int, seed: int) -> list[Path]:
    """Write ``count`` JPEGs (quality 90) into ``folder``, one in memory at a time; a folder that holds them
    already (``--photos``, same seed) is used as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo_{i:04d}.jpg" for i in range(count)]
    stamp = folder / f".seed-{seed}-{width}x{height}"
    if stamp.exists() and all(path.exists() for path in paths):
        return paths
    maker = PhotoMaker(width, height, seed)
    for path in paths:
        maker.make().save(path, format="JPEG", quality=90)
    stamp.touch()
    return paths


# --- the two ways of ingesting ---------------------------------------------------------------


def ingest_synthgen(paths: list[Path], out: Path, limits: ImageLimits) -> float:
    """decode_image + store working PNG and original, per file. Returns seconds."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, path in enumerate(paths):
        data = path.read_bytes()
        decoded = decode_image(data, path.name, limits)
        (out / f"{i:04d}.png").write_bytes(png_bytes(decoded.image))
        (out / f"{i:04d}.orig").write_bytes(data)
    return time.perf_counter() - start


def ingest_naive(paths: list[Path], out: Path, working_size: int) -> float:
    """The 2023 study's way: full decode, resize from full size, full-size PNG. Returns seconds."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            image.load()
            width, height = image.size
            scale = working_size / min(width, height)
            image.resize((round(width * scale), round(height * scale)), Image.Resampling.LANCZOS)
            image.save(out / f"{i:04d}.png", format="PNG")
    return time.perf_counter() - start


def ingest_plain(paths: list[Path], working_size: int) -> float:
    """The plain loop: full decode + Lanczos resize to the working size, one photo at a time. Returns seconds."""
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image.load()
            width, height = image.size
            scale = working_size / min(width, height)
            image.resize((round(width * scale), round(height * scale)), Image.Resampling.LANCZOS)
    return time.perf_counter() - start


def ingest_api(paths: list[Path], url: str, token: str, batch: int, name: str) -> float:
    """POST /api/datasets/ in requests of ``batch`` files; checks every answer. Returns seconds.

    A 429 (throttled) answer is waited out (Retry-After) and the request sent again; only the
    request that succeeds is timed.
    """
    import requests

    endpoint = url.rstrip("/") + "/api/datasets/"
    headers = {"Authorization": f"Token {token}"}
    total = 0.0
    for first in range(0, len(paths), batch):
        chunk = paths[first : first + batch]
        while True:
            seconds, response = _post_files(requests, endpoint, headers, f"{name}-{first // batch}", chunk)
            if response.status_code != 429:
                break
            wait = float(response.headers.get("Retry-After", 5))
            print(f"throttled (429); waiting {wait:.0f} s")
            time.sleep(wait)
        total += seconds
        if response.status_code != 201:
            raise SystemExit(f"POST {endpoint} answered {response.status_code}: {response.text[:500]}")
        body = response.json()
        if body.get("image_count") != len(chunk) or body.get("rejected"):
            raise SystemExit(
                f"upload of {len(chunk)} photos stored {body.get('image_count')}, rejected {body.get('rejected')}"
            )
    return total


def _post_files(requests, endpoint: str, headers: dict, name: str, paths: list[Path]):
    """One multipart POST of ``paths`` as repeated ``images`` fields; (seconds, response)."""
    handles = [path.open("rb") for path in paths]
    try:
        files = [("images", (path.name, handle, "image/jpeg")) for path, handle in zip(paths, handles)]
        start = time.perf_counter()
        response = requests.post(endpoint, headers=headers, data={"name": name}, files=files, timeout=600)
        return time.perf_counter() - start, response
    finally:
        for handle in handles:
            handle.close()


# --- a throwaway instance (--serve) ------------------------------------------------------------------


def setup_instance() -> None:
    """Child process with Django configured: migrate, one user and its API token (printed as JSON)."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("ingest", password=os.urandom(16).hex())
    print(json.dumps({"token": Token.objects.create(user=user).key}))


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a process and its descendants, from Linux's /proc (0 elsewhere)."""
    total, ticks, pids = 0.0, os.sysconf("SC_CLK_TCK"), [pid]
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pids.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Instance:
    """gunicorn as `make web` runs it (one process, 8 threads), on a temporary folder; stop() removes it."""

    def __init__(self, database_url: str = "", threads: int = 8):
        import load  # bench/load.py: the same throwaway-instance helpers

        self.load = load
        self.folder = Path(tempfile.mkdtemp(prefix="synthgen-ingest-instance-"))
        self.database_url = database_url
        args = argparse.Namespace(database_url=database_url, rate="", server="gunicorn", threads=threads)
        self.env = {**load.instance_env(self.folder, args), "SYNTHGEN_UPLOAD_THROTTLE": "100000/min"}
        if database_url.startswith("postgres"):
            load.postgres_database(database_url, create=True)
        setup = subprocess.run(
            [sys.executable, __file__, "_setup"], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if setup.returncode != 0:
            raise SystemExit(f"setup failed:\n{setup.stdout[-2000:]}\n{setup.stderr[-4000:]}")
        self.token = json.loads(setup.stdout.strip().splitlines()[-1])["token"]
        port = load.free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log = self.folder / "server.log"
        self.server = load.start(load.server_command(args, port), self.env, self.log)
        load.wait_until_up(self.base, self.server, self.log)

    def stop(self) -> None:
        self.server.terminate()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
        if self.database_url.startswith("postgres"):
            self.load.postgres_database(self.database_url, create=False)
        shutil.rmtree(self.folder, ignore_errors=True)


# --- main ------------------------------------------------------------------------------------


def megabytes(paths: list[Path]) -> float:
    return sum(path.stat().st_size for path in paths) / MB


def print_table(rows: list[Row]) -> None:
    print(f"\n{'case':<52} {'images':>6} {'MB':>8} {'seconds':>8} {'images/s':>9} {'ms/image':>9}")
    for row in rows:
        print(
            f"{row.case:<52} {row.images:>6} {row.megabytes:>8.1f} {row.seconds:>8.2f} "
            f"{row.per_second:>9.1f} {1000 * row.seconds / row.images:>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="number of 12 MP photos (case b)")
    parser.add_argument("--reference-limit", type=int, default=10, help="photos of case b the naive reference runs on")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temporary folder goes")
    parser.add_argument("--api", default=None, help="base URL of a running SynthGen, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", default=None, help="API token (mode 2)")
    parser.add_argument("--batch", type=int, default=50, help="photos per API request for case b")
    parser.add_argument("--plain-limit", type=int, default=50, help="photos of case b the plain loop runs on")
    parser.add_argument("--serve", action="store_true", help="start a throwaway instance (gunicorn) and use its API")
    parser.add_argument("--database-url", default="", help="--serve: postgres://... (made for the run, dropped after)")
    parser.add_argument(
        "--photos",
        type=Path,
        default=None,
        help="keep the generated photos in this folder and use them again in later runs",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.api and not args.token:
        parser.error("--api needs --token")
    if args.serve and args.api:
        parser.error("--serve starts its own instance: leave --api out")

    limits = ImageLimits()
    root = Path(tempfile.mkdtemp(prefix="synthgen-ingest-", dir=args.workdir))
    try:
        start = time.perf_counter()
        photos = args.photos or root
        small = write_photos(photos / "in-3000x2400", 3, 3000, 2400, args.seed)
        large = write_photos(photos / "in-4000x3000", args.count, 4000, 3000, args.seed + 1)
        print(
            f"generated {len(small)} + {len(large)} JPEG photos (quality 90) "
            f"in {time.perf_counter() - start:.1f} s under {root}"
        )

        instance = None
        if args.serve:
            instance = Instance(args.database_url)
            args.api, args.token = instance.base, instance.token
            print(
                f"throwaway instance: gunicorn gthread 1x8 at {instance.base}, "
                f"{'PostgreSQL' if args.database_url.startswith('postgres') else 'SQLite'}"
            )
        load_before = os.getloadavg()
        cpu: dict[str, tuple[float, float]] = {}  # case -> CPU seconds per image of the server, of this client
        rows: list[Row] = []
        mode = "API" if args.api else "in-process"
        for label, paths, reference_count in (
            ("3 photos 3000x2400", small, len(small)),
            (f"{len(large)} photos 4000x3000 (12 MP)", large, min(args.reference_limit, len(large))),
        ):
            if args.api:
                server_before, client_before = (
                    (tree_cpu_seconds(instance.server.pid) if instance else 0.0),
                    own_cpu_seconds(),
                )
                seconds = ingest_api(paths, args.api, args.token, args.batch, f"bench-{len(paths)}")
                if instance is not None:
                    cpu[label] = (
                        (tree_cpu_seconds(instance.server.pid) - server_before) / len(paths),
                        (own_cpu_seconds() - client_before) / len(paths),
                    )
                suffix = f"API, {args.batch}/request" if len(paths) > args.batch else "API, 1 request"
            else:
                seconds = ingest_synthgen(paths, root / "out-synthgen", limits)
                suffix = "synthgen, in-process"
            rows.append(Row(f"{label} ({suffix})", len(paths), megabytes(paths), seconds))
            shutil.rmtree(root / "out-synthgen", ignore_errors=True)
            subset = paths[:reference_count]
            seconds = ingest_naive(subset, root / "out-naive", limits.working_size)
            note = "" if reference_count == len(paths) else f", first {reference_count}"
            rows.append(Row(f"{label} (REFERENCE naive{note})", len(subset), megabytes(subset), seconds))
            shutil.rmtree(root / "out-naive", ignore_errors=True)
        if instance is not None:
            instance.stop()
        plain = large[: min(args.plain_limit, len(large))]
        note = "" if len(plain) == len(large) else f", first {len(plain)}"
        rows.append(
            Row(
                f"{len(large)} photos 4000x3000 (REFERENCE plain decode+resize{note})",
                len(plain),
                megabytes(plain),
                ingest_plain(plain, limits.working_size),
            )
        )
        load_after = os.getloadavg()

        print(
            f"\n{os.cpu_count()} CPUs; load average (1, 5, 15 min) "
            f"before {_load(load_before)}, after {_load(load_after)}"
            " - other processes share these cores; a load above the CPU count means the numbers are low"
        )
        print_table(rows)
        for label, (server, client) in cpu.items():
            print(
                f"CPU per image, {label}: web server {1000 * server:.0f} ms, this client {1000 * client:.0f} ms: on "
                f"{os.cpu_count()} idle cores at most {os.cpu_count() / (server + client):.0f} images/s"
            )
        three = rows[0]
        print(
            f"\nmode: {mode}; 3 photos in {three.seconds:.2f} s: "
            f"{'under' if three.seconds < 2 else 'NOT under'} the 2 s target"
        )
        for synthgen, naive in (rows[0], rows[1]), (rows[2], rows[3]):
            print(
                f"speed-up over the naive reference ({synthgen.case.split(' (')[0]}): "
                f"{synthgen.per_second / naive.per_second:.0f}x"
            )
        bulk, plain_row = rows[2], rows[4]
        ratio = bulk.per_second / plain_row.per_second
        print(
            f"{bulk.case}: {bulk.per_second:.1f} images/s ({'meets' if bulk.per_second >= 25 else 'MISSES'} >= 25), "
            f"{ratio:.1f}x the plain decode+resize loop ({'meets' if ratio >= 3 else 'MISSES'} >= 3x)"
        )
        print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _load(averages: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in averages)


if __name__ == "__main__":
    if sys.argv[1:] == ["_setup"]:
        setup_instance()
    else:
        main()
