"""Time before training (#21): a worker's measured cost per step predicts a real training's time; the wizard shows
a time for each training length, where it comes from, and when no worker is up; the run page compares the
estimate stored when training started with the time training took."""

import pytest
import torch
from django.urls import reverse
from django.utils import timezone

from apps.datasets import services as dataset_services
from apps.generators import estimates, presence, recipes, services, step_costs
from apps.generators.models import Generator, StepCost, TrainingRun, WorkerPresence
from apps.ml.engine import registry
from tests.factories import image_uploads
from tests.realworker import Worker, wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def a_worker(queues=("default", "gpu"), device="cpu", **fields):
    return WorkerPresence.objects.create(
        holder=f"host-{device}:123:abcd",
        host=f"host-{device}",
        queues=list(queues),
        device=device,
        device_name="2 CPU threads",
        started_at=timezone.now(),
        seen_at=timezone.now(),
        **fields,
    )


# --- the measurement predicts a real training ----------------------------------------------------------------


def test_a_measured_step_cost_predicts_a_second_tiny_training_within_2x(settings, tmp_path):
    settings.SYNTHGEN_TRAINING_OVERRIDES = {"dcgan": {"ngf": 16, "ndf": 16, "batch_size": 32}}
    config = recipes.recipe("dcgan", resolution=32, channels=3, preset="quick", image_count=150, device="cpu")
    seconds, steps = step_costs.measure_step_cost("dcgan", config, "cpu", steps=8, budget=None)
    assert steps == 8 and seconds > 0
    step_costs.record_step_cost("dcgan", config, "cpu", seconds, steps=steps, name="test CPU")

    # A second tiny training of the same recipe through the real trainer (as the train stage runs it): its own
    # clock against the estimate for its number of steps.
    run_config = {**config, "total_steps": 24, "checkpoint_every": 24, "report_every": 6}
    found = estimates.estimate("dcgan", run_config, "cpu")
    assert found.source == "measured on this installation's cpu worker (test CPU)"
    assert found.seconds == pytest.approx(seconds * 24)
    images = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result = registry.get("dcgan")(run_config, device="cpu").train(images, checkpoint_dir=tmp_path / "run")
    assert result.steps == 24
    assert 0.5 <= found.seconds / result.seconds <= 2.0, (found.seconds, result.seconds)


def test_a_measurement_stops_when_the_worker_stops_and_stores_nothing(settings):
    config = recipes.recipe("dcgan", resolution=32, channels=3, preset="quick", image_count=150, device="cpu")
    assert step_costs.measure_step_cost("dcgan", config, "cpu", should_stop=lambda: True) is None
    assert step_costs.measure_next("cpu", should_stop=lambda: True) is False
    assert not StepCost.objects.exists()


def test_a_worker_measures_each_shape_once(settings):
    # The tiny recipes of the tests: one shape per type and size.
    shapes = step_costs.measured_shapes("cpu")
    assert {(kind, config["resolution"]) for kind, config in shapes} == {
        (kind, r) for kind in registry.all_types() for r in (32, 64, 128)
    }
    assert step_costs.measure_next("cpu") is True
    assert StepCost.objects.count() == 1 and len(step_costs.unmeasured_shapes("cpu")) == len(shapes) - 1
    cost = StepCost.objects.get()
    assert cost.device == "cpu" and cost.seconds_per_step > 0 and 1 <= cost.steps <= 4


# --- the wizard ------------------------------------------------------------------------------------------------


def every_shape_costs(seconds_per_step: float, device: str = "cpu") -> None:
    for kind, config in step_costs.measured_shapes(device):
        step_costs.record_step_cost(kind, config, device, seconds_per_step, steps=4, name="2 CPU threads")


def table(page: str, kind: str, resolution: int, device: str = "cpu") -> str:
    start = page.index(
        f'<table class="times" data-kind="{kind}" data-resolution="{resolution}" data-device="{device}">'
    )
    return page[start : page.index("</table>", start)]


def time_of(row_html: str) -> str:
    """The time a row gives, without its source."""
    cell = row_html[row_html.index("<td>") + 4 :]
    return cell.split("<", 1)[0].strip()


def row(table_html: str, preset: str) -> str:
    start = table_html.index(f'<tr data-preset="{preset}">')
    return table_html[start : table_html.index("</tr>", start)]


def test_the_wizard_shows_the_time_of_each_training_length_on_the_worker_that_is_up(settings, logged_in):
    settings.SYNTHGEN_TRAINING_OVERRIDES = {}  # the real recipes
    a_worker()
    every_shape_costs(0.1)
    page = logged_in.get(reverse("generators:wizard")).content.decode()
    assert "1 worker that trains is up: host-cpu (2 CPU threads)." in page
    dcgan64 = table(page, "dcgan", 64)
    # CPU recipes (apps/ml/dcgan/config.py): quick 2,000 steps whatever the photos; standard 5,000 and long 12,000
    # steps up to 500 photos, sqrt(photos / 500) times as many above; automatic: standard under 300 photos, quick
    # above. At 0.1 s a step:
    assert time_of(row(dcgan64, "quick")) == "about 3 min"
    assert "about 8 min (150 photos) to 11 min (1,000 photos)" in row(dcgan64, "standard")
    assert "about 20 min (150 photos) to 27 min (1,000 photos)" in row(dcgan64, "long")
    assert "about 8 min (150 photos) to 3 min (1,000 photos)" in row(dcgan64, "")
    # Every length's cost comes from the same measurement: said once, under the table.
    assert "Cost per step measured on this installation&#x27;s cpu worker (2 CPU threads)." in dcgan64
    assert all("measured" not in row(dcgan64, preset) for preset in ("", "quick", "standard", "long"))
    # DDIM on a CPU: 1,500 / 4,000 / 10,000 steps under 300 photos, 2x from 700.
    ddim32 = table(page, "ddim", 32)
    assert "about 2 min (150 photos) to 5 min (1,000 photos)" in row(ddim32, "quick")
    assert "about 7 min (150 photos) to 13 min (1,000 photos)" in row(ddim32, "standard")
    assert "about 17 min (150 photos) to 33 min (1,000 photos)" in row(ddim32, "long")
    assert 'src="/static/js/times.js"' in page


def test_past_runs_of_the_same_shape_are_the_evidence_before_the_measurement(settings, logged_in, user):
    settings.SYNTHGEN_TRAINING_OVERRIDES = {}
    a_worker()
    every_shape_costs(0.1)
    config = recipes.recipe("dcgan", resolution=64, channels=3, preset="standard", image_count=131, device="cpu")
    for seconds in (0.2, 0.25, 0.3):  # the median is 0.25 s a step
        generator = Generator.objects.create(
            owner=user,
            name="past",
            kind="dcgan",
            resolution=64,
            channels=3,
            preset="standard",
            config=config,
            status=Generator.Status.READY,
        )
        TrainingRun.objects.create(
            generator=generator,
            status=TrainingRun.Status.DONE,
            device="cpu",
            step=5000,
            total_steps=5000,
            train_seconds=seconds * 5000,
            finished_at=timezone.now(),
        )
    # Not evidence for it: a run on another kind of device, one of grey photos, one of another width.
    for device, channels, options in (("cuda:0", 3, {}), ("cpu", 1, {}), ("cpu", 3, {"ngf": 64})):
        other = Generator.objects.create(
            owner=user,
            name="other",
            kind="dcgan",
            resolution=64,
            channels=channels,
            preset="standard",
            config={**config, "channels": channels, **options},
        )
        TrainingRun.objects.create(
            generator=other,
            status=TrainingRun.Status.DONE,
            device=device,
            step=5000,
            total_steps=5000,
            train_seconds=0.01 * 5000,
            finished_at=timezone.now(),
        )
    dcgan64 = table(logged_in.get(reverse("generators:wizard")).content.decode(), "dcgan", 64)
    assert "about 21 min (150 photos) to 28 min (1,000 photos)" in row(dcgan64, "standard")
    assert "from 3 past runs on this installation&#x27;s cpu workers" in row(dcgan64, "standard")
    assert "Cost per step" not in dcgan64  # the lengths' costs come from different evidence: said per row
    # The other lengths pick other network widths: their own evidence (the measurement).
    assert time_of(row(dcgan64, "quick")) == "about 3 min" and "measured on" in row(dcgan64, "quick")


def test_no_worker_up_is_said_and_the_last_measurements_are_still_shown(settings, logged_in):
    settings.SYNTHGEN_TRAINING_OVERRIDES = {}
    page = logged_in.get(reverse("generators:wizard")).content.decode()
    assert "No worker is up: training will wait in the queue until one starts" in page
    assert "Nothing has been measured on this installation yet" in page and "<table" not in page

    # Gone workers: one stopped, one not seen for longer than a few beats, one that does not train.
    a_worker(stopped_at=timezone.now())
    WorkerPresence.objects.create(
        holder="old:1:x",
        host="old",
        queues=["gpu"],
        device="cuda",
        started_at=timezone.now(),
        seen_at=timezone.now() - timezone.timedelta(seconds=presence.WORKER_GONE_SECONDS + 5),
    )
    WorkerPresence.objects.create(
        holder="web:1:x",
        host="web",
        queues=["default"],
        device="cpu",
        started_at=timezone.now(),
        seen_at=timezone.now(),
    )
    every_shape_costs(0.1)
    page = logged_in.get(reverse("generators:wizard")).content.decode()
    assert "No worker that trains is up (the 1 up takes no &#x27;gpu&#x27; queue): training will wait" in page
    assert "The times below are from the workers seen before." in page
    assert time_of(row(table(page, "dcgan", 64), "quick")) == "about 3 min"

    # A worker that trains comes up, on a device nothing was measured on yet.
    a_worker(device="cuda")
    page = logged_in.get(reverse("generators:wizard")).content.decode()
    assert "No worker is up" not in page and "1 worker that trains is up: host-cuda" in page
    assert "not measured yet on the cuda worker" in row(table(page, "dcgan", 64, "cuda"), "quick")


def test_a_worker_says_it_is_up_beats_and_stops():
    worker = presence.worker_started(holder="h:1:t", queues=["gpu", "default"], device="cuda:1", name="GPU")
    assert worker.device == "cuda" and presence.training_workers() == [worker]
    WorkerPresence.objects.filter(pk=worker.pk).update(seen_at=timezone.now() - timezone.timedelta(hours=1))
    assert presence.training_workers() == []
    presence.worker_seen("h:1:t")
    assert presence.training_workers() == [worker]
    presence.worker_stopped("h:1:t")
    assert presence.training_workers() == []


# --- the run page --------------------------------------------------------------------------------------------


def test_the_run_page_compares_the_estimate_stored_at_the_start_with_the_time_training_took(
    user, logged_in, api, django_capture_on_commit_callbacks
):
    config = recipes.recipe("dcgan", resolution=32, channels=3, preset="quick", image_count=6, device="cpu")
    step_costs.record_step_cost("dcgan", config, "cpu", 20.0, steps=4, name="2 CPU threads")  # 6 tiny steps: 2 min
    dataset, _ = dataset_services.create_dataset(owner=user, name="ellipses", files=image_uploads(6), archive=None)
    with django_capture_on_commit_callbacks(execute=True):
        generator = services.start_training(
            owner=user, name="ellipses", dataset=dataset, kind="dcgan", resolution=32, preset="quick"
        )
    run = TrainingRun.objects.get(generator=generator)
    assert run.status == TrainingRun.Status.DONE
    assert run.estimated_seconds == 120.0 and run.estimate_source.startswith("measured on this installation's cpu")
    assert 0 < run.train_seconds < 60
    took = estimates.duration(run.train_seconds)
    line = f"Training estimated 2 min (measured on this installation&#x27;s cpu worker (2 CPU threads)); took {took}."
    assert line in logged_in.get(reverse("generators:run", args=[run.pk])).content.decode()
    body = api.get(f"/api/runs/{run.pk}/").json()
    assert body["estimated_seconds"] == 120.0 and body["train_seconds"] == run.train_seconds
    assert body["estimate"].endswith(f"; took {took}.")

    # A later measurement does not change what this run was told.
    step_costs.record_step_cost("dcgan", config, "cpu", 1.0, steps=4)
    run.refresh_from_db()
    assert run.estimated_seconds == 120.0


def test_a_run_without_an_estimate_says_nothing_and_a_running_one_says_the_estimate_only(user):
    generator = Generator.objects.create(owner=user, name="g", kind="dcgan", resolution=32, preset="quick")
    run = TrainingRun.objects.create(generator=generator)
    assert estimates.run_comparison(run) == ""
    run.estimated_seconds, run.estimate_source = 750, "from 2 past runs on this installation's cpu workers"
    assert (
        estimates.run_comparison(run)
        == "Training estimated 12 min (from 2 past runs on this installation's cpu workers)."
    )
    run.train_seconds = 5 * 3600 + 240
    assert estimates.run_comparison(run).endswith("; took 5 h 4 min.")


def test_durations_in_words():
    assert [estimates.duration(s) for s in (0.2, 40, 89, 90, 720, 5340, 5400, 7200)] == [
        "1 s",
        "40 s",
        "89 s",
        "2 min",
        "12 min",
        "89 min",
        "1 h 30 min",
        "2 h",
    ]


# --- a real worker ---------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_says_it_is_up_measures_its_step_costs_and_says_it_stopped(real_broker, client, user, tmp_path):
    client.force_login(user)
    assert "No worker is up" in client.get(reverse("generators:wizard")).content.decode()
    worker = Worker(tmp_path, extra_env={"SYNTHGEN_MEASURE_STEP_COSTS": "1"}).start()
    try:
        shapes = step_costs.measured_shapes("cpu")  # the tests' tiny recipes: one shape per type and size
        wait_for(lambda: StepCost.objects.count(), lambda count: count == len(shapes), timeout=120)
        present = WorkerPresence.objects.get()
        assert set(present.queues) == {"default", "gpu"} and present.device == "cpu"
        assert present.device_name == "1 CPU thread" and present.stopped_at is None
        page = client.get(reverse("generators:wizard")).content.decode()
        assert "1 worker that trains is up" in page and "No worker is up" not in page
        assert "Cost per step measured on this installation&#x27;s cpu worker (1 CPU thread)." in table(
            page, "ddim", 32
        )
    finally:
        worker.stop()
        print(worker.logs())
    assert WorkerPresence.objects.get().stopped_at is not None
    assert "No worker is up" in client.get(reverse("generators:wizard")).content.decode()
