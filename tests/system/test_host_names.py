"""A deploy of separate processes on hosts with real host names, all on this one machine. What is real: the web is
`make web` (production settings, gunicorn): the test uploads the dataset (a multipart POST), starts the training and
follows it over HTTP, with an API token, and reads the lease (not in the API) from the database; the stale-run
sweeper's clock is `make beat`; each Celery worker is a `celery worker` process in a UTS namespace of its own whose
host name is its host's (tests/realworker.py's Worker(host=...)), so the lease it records (TrainingRun.holder,
"host:pid:token") names that host, as on another machine. They share PostgreSQL, Redis and the S3 storage (a real
SeaweedFS) and nothing else: each host has its own empty media folder and its own scratch folder. What is not: the
pids stay in this machine's one pid namespace, so host B could see that host A's dead worker process is gone; only
the host name in the lease keeps B from taking the stage over at once (the test is stricter for it). A killed worker
is a SIGKILL; the duplicate delivery of its train task (RabbitMQ redelivers a dead consumer's message at once; Redis
only after its visibility timeout) is queued by the test.

A worker on host A is killed in the middle of training (its checkpoint is in storage), then:
- a worker on host B does not take the train stage over while A's last heartbeat is fresh: not by its start-up sweep,
  not by beat's sweeps (one a second), not when the train task is delivered to it again; once the heartbeat is
  SYNTHGEN_STALE_RUN_SECONDS (20) old, a sweep re-queues the run and B takes it over, resumes from the checkpoint
  (the steps it reports never go below the checkpoint's) and finishes it;
- a worker started again on host A (a new process in a new namespace, of the same host name) takes it over at once,
  by its start-up sweep, with SYNTHGEN_STALE_RUN_SECONDS at 600, and finishes it the same way.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests
from rest_framework.authtoken.models import Token
from safetensors import safe_open

from apps.core import storage
from apps.generators.models import TrainingRun
from apps.generators.services import launch_pipeline
from tests.factories import LONG_TINY_RUN, deploy_env, free_port, make, png_bytes, stop_process
from tests.realworker import Worker, require_host_names, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HOST_A, HOST_B = "gpu-host-a", "gpu-host-b"
HTTPS = {"X-Forwarded-Proto": "https"}  # as the TLS-terminating proxy in front of gunicorn says
# A tiny DCGAN that trains for a few seconds (about 100 steps a second here), a checkpoint every 50 steps.
TOTAL_STEPS = 800
TRAINING = {"dcgan": {**LONG_TINY_RUN["dcgan"], "total_steps": TOTAL_STEPS}}
KILL_AT_STEP = 150


class Web:
    """`make web` on a free port, and a requests session that authenticates with ``user``'s API token."""

    def __init__(self, folder: Path, env: dict[str, str], user):
        folder.mkdir(parents=True)
        self.port = free_port()
        self.log = folder / "web.log"
        self.process = make("web", {**env, "PORT": str(self.port)}, self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()
        token = Token.objects.create(user=user).key  # the database is the test's own
        self.session.headers.update({**HTTPS, "Authorization": f"Token {token}"})

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        assert self.process.poll() is None, f"the web exited:\n{self.logs()}"
        return self.session.request(method, self.base + path, timeout=60, allow_redirects=False, **kwargs)

    def wait_up(self, timeout: float = 120) -> None:
        def answers() -> bool:
            try:  # the first answer waits for gunicorn's worker to load the application
                return self.request("GET", "/api/datasets/").status_code == 200
            except requests.ConnectionError:  # not listening yet
                return False

        wait_for(answers, bool, timeout=timeout)

    def start_run(self) -> int:
        """Upload 8 ellipses (multipart) and start a quick 32 px DCGAN on them; the training run's id."""
        files = [("images", (f"img{i}.png", png_bytes(i), "image/png")) for i in range(8)]
        dataset = self.request("POST", "/api/datasets/", data={"name": "ellipses"}, files=files)
        assert dataset.status_code == 201, dataset.text
        body = {"name": "ellipses", "dataset": dataset.json()["id"], "kind": "dcgan", "resolution": 32}
        generator = self.request("POST", "/api/generators/", json={**body, "preset": "quick"})
        assert generator.status_code == 202, generator.text
        return self.request("GET", f"/api/generators/{generator.json()['id']}/").json()["run"]

    def run(self, run_id: int) -> dict:
        return self.request("GET", f"/api/runs/{run_id}/").json()

    def logs(self) -> str:
        return self.log.read_text()[-3000:]


@pytest.fixture
def deploy(real_broker, seaweedfs, s3_storage, settings, user, tmp_path):
    """The deploy's environment for `make` processes, with the web up; yields (web, env)."""
    require_host_names()
    settings.SYNTHGEN_TRAINING_OVERRIDES = TRAINING
    env = deploy_env(
        tmp_path / "web",
        **seaweedfs.env(s3_storage),
        # What the web checks and estimates a request with; the workers build the config they train with.
        SYNTHGEN_TRAINING_OVERRIDES=json.dumps(TRAINING),
        SYNTHGEN_MIN_TRAINING_IMAGES=str(settings.SYNTHGEN_MIN_TRAINING_IMAGES),
        SYNTHGEN_INGEST_THREADS="1",
    )
    web = Web(tmp_path / "web", env, user)
    try:
        yield web, env
    finally:
        stop_process(web.process)
        print(web.logs())


def _worker(tmp_path: Path, host: str, seaweedfs, prefix: str, stale_seconds: int) -> Worker:
    """A worker of host ``host`` (gpu and default queues), with its own media and scratch folders."""
    folder = tmp_path / host
    (folder / "logs").mkdir(parents=True)
    env = {
        **seaweedfs.env(prefix),
        "SYNTHGEN_WORK_DIR": str(folder / "work"),
        "SYNTHGEN_MEDIA_ROOT": str(folder / "media"),
        "SYNTHGEN_STALE_RUN_SECONDS": str(stale_seconds),
    }
    return Worker(folder / "logs", env, host=host)


def _log(worker: Worker) -> str:
    return "\n".join(p.read_text() for p in sorted(worker.log_dir.glob("worker-*.log")))


def _story(worker: Worker) -> str:
    """The worker's log from its connection to the broker on, without the sweeps (beat sends one a second), for a
    failing assertion to show."""
    lines = []
    for log in sorted(worker.log_dir.glob("worker-*.log")):
        text = log.read_text()
        connected = text.find("] Connected to ")
        lines += text[text.rfind("\n", 0, connected) + 1 if connected >= 0 else 0 :].splitlines()
    return "\n".join(line for line in lines if line.strip() and "sweep_stale_runs" not in line)[-4000:]


def _ready(worker: Worker) -> bool:
    assert worker.process.poll() is None, f"the worker exited:\n{worker.logs()}"
    return " ready." in (worker.log_dir / f"worker-{worker.starts}.log").read_text()


def _sweeps(worker: Worker) -> int:
    """The sweep tasks (beat's) that ``worker`` has run."""
    return len(re.findall(r"Task generators\.sweep_stale_runs\[[^]]+\] succeeded", _log(worker)))


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _train_then_kill(web: Web, worker: Worker, tmp_path: Path) -> tuple[TrainingRun, int]:
    """Start a run through the web, let ``worker`` train it past KILL_AT_STEP, kill the worker. Returns the run as it
    left it (held by the dead worker process) and the step of its last checkpoint in storage."""
    run_id = web.start_run()
    wait_for(lambda: web.run(run_id), lambda r: r["progress"]["step"] >= KILL_AT_STEP, timeout=240, interval=0.2)
    worker.kill()
    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == "running" and run.stage == "train", (run.status, run.stage)
    assert KILL_AT_STEP <= run.step < TOTAL_STEPS, run.step
    assert run.holder.startswith(f"{worker.host}:{worker.process.pid}:"), run.holder
    local = storage.fetch_file(storage.run_file(run.pk, "checkpoints/checkpoint.safetensors"), tmp_path / "ckpt")
    with safe_open(str(local), framework="pt") as checkpoint:
        checkpoint_step = json.loads(checkpoint.metadata()["state"])["step"]
    assert 50 <= checkpoint_step <= run.step, (checkpoint_step, run.step)
    return run, checkpoint_step


def _resumes_and_finishes(web: Web, run: TrainingRun, checkpoint_step: int, host: str) -> None:
    """The stage just taken over trains on from the checkpoint (the steps it reports never go below it: from the
    start they would be 10, 20, ... for a second or two) and the run finishes, its last stage held on ``host``."""
    seen: list[int] = []

    def step() -> int:
        seen.append(TrainingRun.objects.values_list("step", flat=True).get(pk=run.pk))
        return seen[-1]

    wait_for(step, lambda s: s >= min(checkpoint_step + 200, TOTAL_STEPS), timeout=120, interval=0.1)
    assert min(seen) >= checkpoint_step, (checkpoint_step, seen)
    done = wait_for(lambda: web.run(run.pk), lambda r: r["status"] in ("done", "failed"), timeout=300)
    assert done["status"] == "done", done
    run.refresh_from_db()
    assert run.resumed_step == checkpoint_step, (run.resumed_step, checkpoint_step)  # the checkpoint's step
    steps = [point["step"] for point in run.losses]
    assert steps == sorted(set(steps)) and steps[-1] == TOTAL_STEPS
    assert run.holder.startswith(f"{host}:"), run.holder  # the last stage (cleanup) was held there too


def test_a_stage_held_on_another_host_is_taken_over_once_its_heartbeat_is_stale(
    deploy, seaweedfs, s3_storage, tmp_path
):
    web, env = deploy
    stale = 20
    a = _worker(tmp_path, HOST_A, seaweedfs, s3_storage, stale).start()
    b = _worker(tmp_path, HOST_B, seaweedfs, s3_storage, stale)
    beat = make("beat", {**env, "SYNTHGEN_SWEEP_SECONDS": "1"}, tmp_path / "beat.log")
    try:
        web.wait_up()
        run, checkpoint_step = _train_then_kill(web, a, tmp_path)
        killed = (run.holder, run.step, "running")
        stale_at = run.heartbeat_at.timestamp() + stale

        b.start()  # its start-up sweep leaves the run alone: the holder is on another host, its heartbeat fresh
        wait_for(lambda: _ready(b), bool, timeout=stale)
        left = stale_at - time.time()
        assert left > 5, f"host B took too long to start: its heartbeat is stale in {left:.1f} s, too soon to tell"
        sweeps = _sweeps(b)
        # The dead worker's train task delivered again (RabbitMQ does at once; so does any duplicate of the chain):
        # B's train skips it, for the holder's process is on another host, where B cannot see whether it lives.
        launch_pipeline(run.pk)
        held = f"run {run.pk}: train is held by another worker"
        while time.time() < stale_at - 1:  # beat's sweeps run on B and leave the run alone too
            run.refresh_from_db()
            now = (run.holder, run.step, run.status)
            assert now == killed, f"{now} while the heartbeat is fresh; killed: {killed}\n{_story(b)}"
            time.sleep(0.25)
        assert _sweeps(b) > sweeps and held in _log(b), _story(b)

        def holder() -> str:
            run.refresh_from_db()
            return run.holder

        taken = wait_for(holder, lambda h: h.startswith(f"{HOST_B}:"), timeout=stale + 30, interval=0.1)
        assert time.time() >= stale_at, "taken over before the heartbeat was stale"
        assert taken.startswith(f"{HOST_B}:{b.process.pid}:"), taken
        assert "re-queued stale training runs: [" in _log(b)  # by a sweep of beat's, once the heartbeat was stale
        _resumes_and_finishes(web, run, checkpoint_step, HOST_B)
    finally:
        stop_process(beat)
        a.stop()
        b.stop()
        print(_story(a), _story(b), sep="\n")
    assert "Task generators.train[" in _log(a) and "Task generators.evaluate[" not in _log(a)
    assert "Task generators.train[" in _log(b) and "Task generators.evaluate[" in _log(b)
    for folder in ("web", HOST_A, HOST_B):  # the hosts shared the storage, not a folder
        assert _files(tmp_path / folder / "media") == [], folder


def test_a_worker_started_again_on_the_same_host_takes_the_stage_over_at_once(deploy, seaweedfs, s3_storage, tmp_path):
    web, _ = deploy
    stale = 600  # the heartbeat stays fresh for the whole test: only the host name and the dead pid can tell
    a = _worker(tmp_path, HOST_A, seaweedfs, s3_storage, stale).start()
    try:
        web.wait_up()
        run, checkpoint_step = _train_then_kill(web, a, tmp_path)
        killed_holder = run.holder
        killed_at = time.monotonic()

        a.start()  # a new process, in a new UTS namespace, of the same host name: its start-up sweep re-queues
        taken = wait_for(
            lambda: TrainingRun.objects.values_list("holder", flat=True).get(pk=run.pk),
            lambda h: h != killed_holder,
            timeout=90,
            interval=0.1,
        )
        assert taken.startswith(f"{HOST_A}:{a.process.pid}:"), taken
        assert time.monotonic() - killed_at < stale / 6  # at once: the heartbeat is seconds old
        assert "re-queued stale training runs: [" in (a.log_dir / "worker-2.log").read_text()  # its start-up sweep
        _resumes_and_finishes(web, run, checkpoint_step, HOST_A)
    finally:
        a.stop()
        print(_story(a))
    for folder in ("web", HOST_A):
        assert _files(tmp_path / folder / "media") == [], folder
