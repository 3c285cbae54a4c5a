"""apps/core/storage.py against a local folder (file://) and a real S3 server (SeaweedFS, s3://); the
SYNTHGEN_STORAGE_URL setting; a whole training + generation on S3 that writes nothing under the local
media folder; and the fault rules (storage down, bucket missing)."""

import io
import zipfile

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.core import storage
from synthgen.settings.base import storage_from_url
from tests.factories import image_uploads


@pytest.fixture(params=["file", "s3"])
def backend(request, settings):
    """Each test runs on a local folder and on the SeaweedFS bucket."""
    if request.param == "s3":
        request.getfixturevalue("s3_storage")
    return request.param


def test_files_go_in_and_come_out_the_same(backend, tmp_path):
    assert storage.write_bytes("runs/1/a.txt", b"first") == "runs/1/a.txt"
    assert storage.write_bytes("runs/1/a.txt", b"second") == "runs/1/a.txt"  # replaced, not renamed
    assert storage.read_bytes("runs/1/a.txt") == b"second"
    assert storage.exists("runs/1/a.txt") and not storage.exists("runs/1/b.txt")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("runs/1/b.txt")
    stream, size = storage.open_stream("runs/1/a.txt")
    assert size == 6 and stream.read() == b"second"
    stream.close()
    assert storage.read_many(["runs/1/a.txt"] * 3) == [b"second"] * 3


def test_a_folder_is_published_and_fetched_whole(backend, tmp_path):
    local = tmp_path / "out"
    (local / "checkpoints").mkdir(parents=True)
    (local / "weights.safetensors").write_bytes(b"w" * 100_000)
    (local / "checkpoints" / "checkpoint.safetensors").write_bytes(b"c")
    (local / ".hidden.tmp").write_bytes(b"half-written")
    names = storage.publish(local, "runs/7")
    assert names == ["runs/7/checkpoints/checkpoint.safetensors", "runs/7/weights.safetensors"]
    assert storage.walk("runs/7") == names and storage.walk("runs/70") == []
    storage.write_bytes("runs/70/other.txt", b"not mine")

    fetched = storage.fetch("runs/7", tmp_path / "in")
    assert (fetched / "weights.safetensors").read_bytes() == b"w" * 100_000
    assert (fetched / "checkpoints" / "checkpoint.safetensors").read_bytes() == b"c"
    assert sorted(p.name for p in fetched.rglob("*") if p.is_file()) == [
        "checkpoint.safetensors",
        "weights.safetensors",
    ]
    skipped = storage.fetch("runs/7", tmp_path / "in2", skip={"weights.safetensors"})
    assert not (skipped / "weights.safetensors").exists()
    assert list(storage.fetch("runs/8", tmp_path / "empty").iterdir()) == []

    storage.remove_prefix("runs/7")
    assert storage.walk("runs/7") == [] and storage.read_bytes("runs/70/other.txt") == b"not mine"
    with pytest.raises(ValueError):
        storage.remove_prefix("/")


def test_scratch_folders_are_removed_even_after_an_error(settings, tmp_path):
    with pytest.raises(RuntimeError):
        with storage.scratch("stage") as folder:
            (folder / "x").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not folder.exists()
    assert folder.parent == settings.SYNTHGEN_WORK_DIR / "scratch"


def test_a_killed_processs_scratch_folders_are_removed_and_the_living_ones_kept(settings):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    root = settings.SYNTHGEN_WORK_DIR / "scratch"
    dead = root / f"run3-train-p{gone.pid}-abc_12"
    (dead / "checkpoints").mkdir(parents=True)
    (dead / "checkpoints" / "checkpoint.safetensors").write_bytes(b"c")
    with storage.scratch("run4-prepare") as mine:
        other = root / "not-a-scratch-folder"
        other.mkdir()
        assert storage.remove_stale_scratch() == [dead.name]
        assert mine.exists() and other.exists() and not dead.exists()


def test_storage_url_chooses_the_backend(monkeypatch):
    assert storage_from_url("file://") == {"BACKEND": "apps.core.storage_backends.LocalStorage", "OPTIONS": {}}
    assert storage_from_url("file:///srv/media")["OPTIONS"] == {"location": "/srv/media"}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    s3 = storage_from_url("s3://synthgen?endpoint=http://10.0.0.5:8333&region=eu-west-1&prefix=prod/")
    assert s3 == {
        "BACKEND": "apps.core.storage_backends.S3Storage",
        "OPTIONS": {
            "bucket_name": "synthgen",
            "endpoint_url": "http://10.0.0.5:8333",
            "region_name": "eu-west-1",
            "location": "prod",
            "access_key": "key",
            "secret_key": "secret",
        },
    }
    assert storage_from_url("s3://synthgen/some/prefix")["OPTIONS"]["location"] == "some/prefix"
    assert storage_from_url("s3://synthgen")["OPTIONS"]["endpoint_url"] is None  # AWS itself
    for bad in ("s3://?endpoint=http://x", "s3://b?endpont=http://x", "ftp://host/x"):
        with pytest.raises(ImproperlyConfigured):
            storage_from_url(bad)


def test_the_storage_names_itself(backend, settings):
    if backend == "s3":
        assert storage.describe().startswith("S3 bucket 'synthgen-test-") and "http://127.0.0.1:" in storage.describe()
    else:
        assert storage.describe() == f"the folder {settings.MEDIA_ROOT}"
    storage.check()


# --- a whole run on S3 -------------------------------------------------------------------------------


def _local_files(folder):
    return sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.django_db(transaction=True)
def test_upload_train_generate_download_on_s3_writes_nothing_under_the_media_folder(
    s3_storage, seaweedfs, api, settings
):
    dataset = api.post("/api/datasets/", {"name": "ellipses", "images": image_uploads(8)}, format="multipart")
    assert dataset.status_code == 201, dataset.content
    response = api.post(
        "/api/generators/",
        {
            "name": "ellipses",
            "dataset": dataset.json()["id"],
            "kind": "dcgan",
            "resolution": 32,
            "augment": True,
            "preset": "quick",
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    generator = api.get(f"/api/generators/{response.json()['id']}/").json()
    assert generator["status"] == "ready", generator
    run = api.get(f"/api/runs/{generator['run']}/").json()
    assert run["status"] == "done"

    job = api.post(
        f"/api/generators/{generator['id']}/generate/", {"count": 12, "seed": 3, "filter": False}, format="json"
    )
    assert job.status_code == 202, job.content
    done = api.get(f"/api/jobs/{job.json()['id']}/").json()
    assert done["status"] == "done", done
    download = api.get(f"/api/jobs/{done['id']}/download/")
    assert download.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert len([n for n in archive.namelist() if n.endswith(".png")]) == 12, (
        archive.namelist(),
        seaweedfs.keys(f"{s3_storage}/jobs"),
    )

    assert _local_files(settings.MEDIA_ROOT) == []
    assert _local_files(settings.SYNTHGEN_WORK_DIR) == []  # every stage's scratch folder was removed
    keys = seaweedfs.keys(f"{s3_storage}/")
    folders = {key.split("/")[1] for key in keys}
    assert folders == {"datasets", "generators", "jobs"}, keys  # runs/<id>/ went with cleanup
    gid = generator["id"]
    assert {
        f"{s3_storage}/generators/{gid}/{name}"
        for name in ("weights.safetensors", "config.json", "reference.safetensors", "samples.png")
    } <= set(keys)
    assert f"{s3_storage}/generators/{gid}/progress.png" not in keys


# --- faults ------------------------------------------------------------------------------------------


@pytest.fixture
def storage_down(seaweedfs, s3_storage):
    """Returns a function that stops the SeaweedFS server; it is started again when the test ends."""
    yield seaweedfs.stop
    if seaweedfs.process.poll() is not None:
        seaweedfs.start()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fault", ["server down", "bucket missing"])
def test_an_upload_the_storage_cannot_take_answers_503_and_keeps_nothing(
    fault, api, seaweedfs, s3_storage, storage_down, settings
):
    from apps.datasets.models import Dataset, DatasetImage

    first = api.post("/api/datasets/", {"name": "kept", "images": image_uploads(3)}, format="multipart")
    assert first.status_code == 201, first.content
    stored = seaweedfs.keys(f"{s3_storage}/")
    assert len(stored) == 6  # 3 originals + 3 working copies
    if fault == "server down":
        storage_down()
    else:
        settings.STORAGES = seaweedfs.storages(s3_storage, bucket="synthgen-no-such-bucket")

    for response in (
        api.post("/api/datasets/", {"name": "lost", "images": image_uploads(2, start=10)}, format="multipart"),
        api.post(
            f"/api/datasets/{first.json()['id']}/images/", {"images": image_uploads(2, start=20)}, format="multipart"
        ),
    ):
        assert response.status_code == 503, response.content
        detail = response.json()["detail"]
        assert set(response.json()) == {"detail"}
        assert "nothing of this upload was kept" in detail and "S3 bucket '" in detail, detail
        if fault == "bucket missing":
            assert "synthgen-no-such-bucket" in detail and "NoSuchBucket" in detail
    assert list(Dataset.objects.values_list("name", flat=True)) == ["kept"]
    assert DatasetImage.objects.count() == 3

    if fault == "server down":
        seaweedfs.start()
    else:
        settings.STORAGES = seaweedfs.storages(s3_storage)
    assert seaweedfs.keys(f"{s3_storage}/") == stored  # nothing new, nothing lost
    image = DatasetImage.objects.first()
    assert storage.read_bytes(image.working.name)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.django_db
def test_the_wizard_says_when_the_storage_cannot_take_the_upload(client, user, seaweedfs, s3_storage, settings):
    from django.urls import reverse

    from apps.datasets.models import Dataset

    client.force_login(user)
    client.post(
        reverse("generators:wizard"), {"name": "ellipses", "kind": "dcgan", "resolution": 32, "preset": "quick"}
    )
    settings.STORAGES = seaweedfs.storages(s3_storage, bucket="synthgen-no-such-bucket")
    response = client.post(reverse("generators:wizard-data"), {"images": image_uploads(6), "augment": "on"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "The images could not be stored, so nothing of this upload was kept" in html
    assert "synthgen-no-such-bucket" in html
    assert not Dataset.objects.exists()


def _untrained_run(user):
    from apps.datasets import services as dataset_services
    from apps.generators import services as generator_services

    dataset = dataset_services.create_dataset(owner=user, name="ellipses", files=image_uploads(8))[0]
    generator = generator_services.start_training(
        owner=user, name="ellipses", dataset=dataset, kind="dcgan", resolution=32, preset="quick"
    )
    return generator.runs.get()


@pytest.mark.django_db
@pytest.mark.parametrize("fault", ["server down", "bucket missing"])
def test_a_stage_retries_then_the_run_fails_naming_the_storage(
    fault, user, seaweedfs, s3_storage, storage_down, settings, django_capture_on_commit_callbacks
):
    from apps.generators import tasks
    from apps.generators.models import TrainingRun

    settings.SYNTHGEN_STORAGE_RETRIES = 2
    with django_capture_on_commit_callbacks(execute=False):  # the chain is not started: the test runs a stage
        run = _untrained_run(user)
    stored = seaweedfs.keys(f"{s3_storage}/")
    if fault == "server down":
        storage_down()
    else:
        settings.STORAGES = seaweedfs.storages(s3_storage, bucket="synthgen-no-such-bucket")
    with pytest.raises(storage.StorageUnavailable):
        tasks.prepare.apply(args=[run.pk])  # eager: the retries run at once, without the back-off
    run = TrainingRun.objects.get(pk=run.pk)
    assert run.status == "failed" and run.stage == "prepare"
    assert run.error.startswith("The prepare stage failed: The file storage (S3 bucket 'synthgen-")
    assert "tried 3 times" in run.error, run.error
    assert run.attempts <= 1  # storage retries are not counted as crashed attempts
    if fault == "server down":
        seaweedfs.start()
    assert seaweedfs.keys(f"{s3_storage}/") == stored  # the dataset is intact


@pytest.mark.django_db
def test_a_stage_that_loses_the_storage_once_carries_on_at_the_retry(
    user, seaweedfs, s3_storage, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from apps.generators import tasks
    from apps.generators.models import TrainingRun

    with django_capture_on_commit_callbacks(execute=False):
        run = _untrained_run(user)
    real_read_many, calls = storage.read_many, []

    def flaky(names):
        calls.append(1)
        if len(calls) == 1:
            raise storage.StorageUnavailable("The file storage (test) cannot be used: gone for a moment")
        return real_read_many(names)

    monkeypatch.setattr(storage, "read_many", flaky)
    tasks.prepare.apply(args=[run.pk])
    run = TrainingRun.objects.get(pk=run.pk)
    assert len(calls) == 2 and run.completed_stages == ["prepare"] and run.status == "running", run.error
    assert storage.exists(storage.run_file(run.pk, storage.RUN_PREPARED))


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_storage_is_down_fails_naming_it_and_nothing_stored_is_lost(
    api, seaweedfs, s3_storage, storage_down, settings
):
    settings.SYNTHGEN_STORAGE_RETRIES = 1
    dataset = api.post("/api/datasets/", {"name": "ellipses", "images": image_uploads(8)}, format="multipart")
    generator = api.post(
        "/api/generators/",
        {"name": "ellipses", "dataset": dataset.json()["id"], "kind": "dcgan", "resolution": 32, "preset": "quick"},
        format="json",
    ).json()
    assert api.get(f"/api/generators/{generator['id']}/").json()["status"] == "ready"
    first = api.post(f"/api/generators/{generator['id']}/generate/", {"count": 4, "filter": False}, format="json")
    assert api.get(f"/api/jobs/{first.json()['id']}/").json()["status"] == "done"
    stored = seaweedfs.keys(f"{s3_storage}/")

    storage_down()
    assert api.get(f"/api/jobs/{first.json()['id']}/download/").status_code == 503
    from apps.generation import loading

    loading.load_model.cache_clear()
    # Eager tasks run inside the request: the task's last failure reaches the API's handler here (a worker's
    # would not); either way the job is failed.
    api.post(f"/api/generators/{generator['id']}/generate/", {"count": 4, "filter": False}, format="json")
    from apps.generation.models import GenerationJob

    failed = GenerationJob.objects.order_by("-pk").first()
    assert failed.status == "failed" and "Generation failed: The file storage (S3 bucket 'synthgen-" in failed.error
    assert "tried 2 times" in failed.error

    seaweedfs.start()
    assert seaweedfs.keys(f"{s3_storage}/") == stored
    download = api.get(f"/api/jobs/{first.json()['id']}/download/")
    assert (
        download.status_code == 200
        and zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).testzip() is None
    )


@pytest.mark.django_db
def test_the_schema_documents_503_where_files_are_stored_or_read(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    documented = sorted(
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "503" in operation["responses"]
    )
    assert documented == [
        "GET /api/generators/{id}/export/",
        "GET /api/jobs/{id}/download/",
        "POST /api/datasets/",
        "POST /api/datasets/{id}/images/",
        "POST /api/generators/import/",
    ]
    answer = schema["paths"]["/api/datasets/"]["post"]["responses"]["503"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
