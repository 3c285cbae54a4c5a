"""A real Celery worker process on a real broker (Redis; RabbitMQ where a test asks for it), sharing the
test's PostgreSQL database and media folders. Used by the integration, fault and browser tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kombu
import pytest
from django.conf import settings
from django.db import connection
from kombu import pools as kombu_pools

from synthgen.celery import app as celery_app

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("SYNTHGEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("SYNTHGEN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
QUEUES = ("default", "gpu")


def require_real_services(broker_url: str = REDIS_URL) -> None:
    if connection.vendor != "postgresql":
        pytest.fail("This test needs PostgreSQL: run it through `make test` (it sets DATABASE_URL).")
    if broker_url.startswith("redis"):
        import redis

        redis.Redis.from_url(broker_url).ping()  # fails loudly when Redis is down
        return
    broker = kombu.Connection(broker_url, connect_timeout=5)
    try:
        broker.connect()
    except OSError as exc:  # RabbitMQ is optional where the tests run by hand; .ci/run starts it
        pytest.skip(f"RabbitMQ is not reachable at {broker.as_uri()} ({exc}); start it: rabbitmq-server -detached")
    finally:
        broker.release()


def empty_broker(broker_url: str) -> None:
    """Drop the messages that earlier tests left in the broker."""
    if broker_url.startswith("redis"):
        import redis

        redis.Redis.from_url(broker_url).flushdb()
        return
    with kombu.Connection(broker_url) as broker:
        for name in QUEUES:  # declared as Celery declares them (durable), then emptied
            queue = kombu.Queue(name, durable=True)(broker.default_channel)
            queue.declare()
            queue.purge()


def forget_broker_connections() -> None:
    """Close this process's broker connections and drop the app's cached pools, so that the next send
    connects to the broker_url in force now. (A pool made earlier keeps its old broker, e.g. the default
    filesystem transport, and sends there; a closed one fails with "Acquire on closed pool".)"""
    kombu_pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def use_real_broker(broker_url: str = REDIS_URL):
    """Point this process's Celery app at a real broker, emptied (not eager). Returns a function that undoes it."""
    require_real_services(broker_url)
    empty_broker(broker_url)
    old = (celery_app.conf.broker_url, celery_app.conf.task_always_eager)
    celery_app.conf.broker_url = broker_url
    celery_app.conf.task_always_eager = False
    forget_broker_connections()

    def undo():
        celery_app.conf.broker_url, celery_app.conf.task_always_eager = old
        forget_broker_connections()

    return undo


def require_host_names() -> None:
    """Fail, saying why, where a worker cannot get a host name of its own (Worker's ``host``: needs root)."""
    try:
        done = subprocess.run(["unshare", "--uts", "hostname", "probe"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.fail("This test needs `unshare` (util-linux) to give each worker a host name of its own.")
    if done.returncode:
        pytest.fail(f"This test gives each worker a host name of its own and needs root for it: {done.stderr.strip()}")


def database_url() -> str:
    """The test database (PostgreSQL) as a DATABASE_URL for another process."""
    db = connection.settings_dict
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """Start, kill and restart `celery worker` processes; logs go to log_dir.

    ``host``: the host name the worker runs under, as if on a machine of that name: each start is a new process in
    a UTS namespace of its own (``unshare --uts``, as root) whose host name is set first, so socket.gethostname()
    (the lease holder, the worker's node name) says ``host``. The pids stay in this machine's pid namespace: a
    worker on another host name still sees whether a pid exists here, so only the host in its lease can tell it
    not to look. None: this machine's host name, no namespace."""

    def __init__(
        self, log_dir: Path, extra_env: dict | None = None, queues: tuple[str, ...] = QUEUES, host: str | None = None
    ):
        self.log_dir = log_dir
        self.queues = queues
        self.host = host
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "synthgen.settings.test",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "SYNTHGEN_TRAINING_OVERRIDES": json.dumps(settings.SYNTHGEN_TRAINING_OVERRIDES),
            "SYNTHGEN_MIN_TRAINING_IMAGES": str(settings.SYNTHGEN_MIN_TRAINING_IMAGES),
            "SYNTHGEN_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "SYNTHGEN_WORK_DIR": str(settings.SYNTHGEN_WORK_DIR),
            "SYNTHGEN_DEVICE": "cpu",
            "SYNTHGEN_QUALITY_SAMPLES": str(settings.SYNTHGEN_QUALITY_SAMPLES),
            "SYNTHGEN_QUALITY_SEEDS": ",".join(map(str, settings.SYNTHGEN_QUALITY_SEEDS)),
            "SYNTHGEN_QUALITY_CLASSIFIER_STEPS": str(settings.SYNTHGEN_QUALITY_CLASSIFIER_STEPS),
            "OMP_NUM_THREADS": "1",  # tiny models: threads only contend on a small shared CPU
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Worker:
        self.starts += 1
        log = open(self.log_dir / f"worker-{self.starts}.log", "w")
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "synthgen",
            "worker",
            "-Q",
            ",".join(self.queues),
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            # A node name of its own: two workers of one name clash on RabbitMQ (the pidbox queue is exclusive).
            "-n",
            f"test-worker-{self.log_dir.parent.name}-{self.log_dir.name}-{self.starts}@%h",
        ]
        if self.host:  # `exec`: the worker keeps the shell's pid, so kill() and stop() reach it
            command = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.host, *command]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-task, as on a crash or an out-of-memory kill."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.log_dir.glob("worker-*.log")))


@pytest.fixture
def real_broker():
    undo = use_real_broker()
    yield REDIS_URL
    undo()


@pytest.fixture
def rabbitmq_broker():
    """The Celery app on RabbitMQ; skips the test when no RabbitMQ answers."""
    undo = use_real_broker(AMQP_URL)
    yield AMQP_URL
    undo()


@pytest.fixture
def worker(real_broker, tmp_path):
    """One running worker; its logs are printed when the test ends."""
    process = Worker(tmp_path).start()
    yield process
    process.stop()
    print(process.logs())


def wait_for(fetch, done, timeout=180, interval=0.5):
    """Poll fetch() until done(value); fail with the last value after timeout seconds."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = fetch()
        if done(value):
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s; last state: {value}")
