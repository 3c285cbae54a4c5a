"""Which stored files count as named, for training runs (named while the run is active; a finished run's are
leftovers), and a running training whose checkpoint is missing; the admin shows the newest check."""

from __future__ import annotations

import pytest
from django.conf import settings

from apps.core import storage
from apps.datasets.models import DatasetImage
from apps.generators.models import Generator, TrainingRun
from apps.upkeep import audit
from apps.upkeep.repair import repair
from apps.upkeep.services import check_storage
from apps.upkeep.tasks import CHECK_TASK, scheduled_check
from tests.factories import check_storage_command as check
from tests.factories import upload_dataset

pytestmark = pytest.mark.django_db


def _run(user, status: str, step: int = 0) -> TrainingRun:
    generator = Generator.objects.create(
        owner=user, name="g", kind="dcgan", resolution=32, preset="quick", status="training",
        config={"checkpoint_every": 10},
    )  # fmt: skip
    return TrainingRun.objects.create(generator=generator, status=status, stage="train", step=step)


def test_an_active_runs_files_are_named_and_a_finished_runs_are_orphans(user):
    active, finished = _run(user, "running", step=5), _run(user, "done")
    for run in (active, finished):
        storage.write_bytes(storage.run_file(run.pk, "prepared.safetensors"), b"data")
    found = audit.find()
    assert [o.name for o in found.orphans] == [storage.run_file(finished.pk, "prepared.safetensors")]
    assert found.missing == []  # 5 steps: not yet two checkpoint intervals


def test_a_training_past_two_checkpoint_intervals_without_a_checkpoint_is_reported_and_warned(user):
    run = _run(user, "running", step=25)
    found = audit.find()
    assert [(m.kind, m.id, m.what) for m in found.missing] == [("run", run.pk, ["checkpoint"])]
    repair(found)
    run.refresh_from_db()
    assert any("checkpoint is missing" in warning for warning in run.warnings)
    storage.write_bytes(storage.run_file(run.pk, "checkpoints/checkpoint.safetensors"), b"state")
    assert audit.find().missing == []


def test_the_beat_runs_the_check_daily_without_repair_and_the_admin_shows_the_last_result(admin_client):
    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule[CHECK_TASK] == 86400
    check_storage()
    storage.write_bytes("jobs/5555/images/000001.png", b"old")  # no job 5555: an orphan
    scheduled_check.delay()  # eager in the tests: runs here, as a worker would
    assert storage.exists("jobs/5555/images/000001.png")  # the scheduled check never repairs
    page = admin_client.get("/admin/upkeep/storagecheck/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "0 rows with missing files, 1 orphans (3 bytes)" in text and "schedule" in text
    assert text.index("1 orphans") < text.index(">clean<")  # the newest first


def test_a_repair_that_would_mark_most_rows_is_refused_unless_forced(api, settings, tmp_path):
    """The media folder not mounted (here: the storage pointed at an empty folder): every image looks lost."""
    upload_dataset(api, "ellipses", count=4)
    settings.MEDIA_ROOT = tmp_path / "not-mounted"
    status, out, err = check("--repair")
    assert status == 2 and "4 rows with missing files" in out
    assert "Not repaired: the files of 4 of the 4 rows checked are missing" in err and "--force" in err
    assert not DatasetImage.objects.exclude(missing_files=[]).exists()
    status, _, _ = check("--repair", "--force")
    assert status == 1 and DatasetImage.objects.filter(missing_files=["original", "working"]).count() == 4
