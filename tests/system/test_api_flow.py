"""The whole flow through the REST API, with the pipeline run eagerly on tiny models."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from torchvision.datasets import ImageFolder

from apps.generators.models import Generator, TrainingRun
from apps.ml.engine import registry
from tests.factories import png_bytes, upload

pytestmark = pytest.mark.django_db


def test_token_endpoint_returns_a_token_that_authenticates(client, user):
    response = client.post("/api/auth/token/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 200
    token = response.json()["token"]
    assert client.get("/api/datasets/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    assert client.get("/api/datasets/").status_code == 401


def test_upload_keeps_good_files_and_rejects_bad_ones_with_reasons(api):
    bad = SimpleUploadedFile("notes.jpg", b"just some text, not a picture\n" * 20, content_type="image/jpeg")
    response = upload(api, count=5, extra=[bad])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["image_count"] == 5
    assert [r["file"] for r in body["rejected"]] == ["notes.jpg"]
    assert "PNG, JPEG or WebP" in body["rejected"][0]["reason"]
    assert api.get(f"/api/datasets/{body['id']}/").json()["image_count"] == 5


def test_upload_of_a_zip(api):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(4):
            archive.writestr(f"photos/p{i}.png", png_bytes(100 + i))
        archive.writestr("../evil.png", png_bytes(200))
    archive_file = SimpleUploadedFile("set.zip", buffer.getvalue(), content_type="application/zip")
    response = api.post("/api/datasets/", {"name": "zipped", "archive": archive_file}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["image_count"] == 4
    assert len(response.json()["rejected"]) == 1


def test_upload_without_images_is_a_400_that_says_what_to_do(api):
    response = api.post("/api/datasets/", {"name": "empty"}, format="multipart")
    assert response.status_code == 400
    assert "images" in response.json()


def test_train_generate_download(api, django_capture_on_commit_callbacks):
    dataset_id = upload(api).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/generators/",
            {
                "name": "ellipse maker",
                "dataset": dataset_id,
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
    assert generator["progress"]["step"] == generator["progress"]["total"] == 6
    assert generator["sample_grid_url"]
    grid = api.get(generator["sample_grid_url"])
    assert grid.status_code == 200 and b"".join(grid.streaming_content).startswith(b"\x89PNG")
    run = TrainingRun.objects.get(generator_id=generator["id"])
    assert run.completed_stages == ["prepare", "augment", "train", "evaluate", "register", "cleanup"]
    quality = generator["quality"]
    assert quality["verdict"] in (
        "varied and new",
        "not realistic yet",
        "repeats itself",
        "copies your photos",
        "mostly noise",
    )
    assert {"diversity", "copy_share", "usefulness"} <= set(quality)
    assert set(quality["usefulness"]) >= {"real", "synthetic", "mixed", "oracle", "gqi"}
    assert (
        quality["usefulness"]["gqi"]["value"] is None and quality["usefulness"]["gqi"]["reason"]
    )  # 8 images: no holdout
    assert run.image_count > 8  # augmentation added copies
    assert run.losses and {"d", "g"} <= set(run.losses[-1])

    with django_capture_on_commit_callbacks(execute=True):
        job = api.post(
            f"/api/generators/{generator['id']}/generate/", {"count": 7, "seed": 3, "filter": False}, format="json"
        )
    assert job.status_code == 202, job.content
    job = api.get(f"/api/jobs/{job.json()['id']}/").json()
    assert job["status"] == "done" and job["count"] == 7
    download = api.get(job["download_url"])
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    names = archive.namelist()
    assert len([n for n in names if n.endswith(".png")]) == 7
    assert any(n.endswith("manifest.json") for n in names)

    # Same seed, same images.
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(
            f"/api/generators/{generator['id']}/generate/", {"count": 7, "seed": 3, "filter": False}, format="json"
        )
    again_zip = zipfile.ZipFile(
        io.BytesIO(b"".join(api.get(f"/api/jobs/{again.json()['id']}/download/").streaming_content))
    )
    first_png = sorted(n for n in names if n.endswith(".png"))[0]
    assert archive.read(first_png) == again_zip.read(first_png.replace(f"-{job['id']}", f"-{again.json()['id']}"))

    # With the filter on (the default), a 6-step generator's noisy images are dropped and counted.
    with django_capture_on_commit_callbacks(execute=True):
        filtered = api.post(f"/api/generators/{generator['id']}/generate/", {"count": 5, "seed": 3}, format="json")
    filtered = api.get(f"/api/jobs/{filtered.json()['id']}/").json()
    assert filtered["status"] == "done" and filtered["dropped"] > 0
    assert filtered["produced"] + filtered["dropped"] >= 5
    if filtered["produced"] < 5:
        assert "passed the quality filter" in filtered["error"]


def test_zips_of_several_generators_unpack_into_one_imagefolder(api, django_capture_on_commit_callbacks, tmp_path):
    """The README's multi-class recipe: each job's zip holds one class folder; unzipped together they are an
    ImageFolder."""
    counts = {"Red Tulip": 4, "white rose": 3}
    out = tmp_path / "imagefolder"
    for name, count in counts.items():
        dataset_id = upload(api, name=name).json()["id"]
        with django_capture_on_commit_callbacks(execute=True):
            generator = api.post(
                "/api/generators/",
                {"name": name, "dataset": dataset_id, "kind": "dcgan", "resolution": 32, "preset": "quick"},
                format="json",
            ).json()
        with django_capture_on_commit_callbacks(execute=True):
            job = api.post(
                f"/api/generators/{generator['id']}/generate/", {"count": count, "filter": False}, format="json"
            ).json()
        download = api.get(f"/api/jobs/{job['id']}/download/")
        zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).extractall(out)
    folder = ImageFolder(str(out))
    assert folder.classes == ["red-tulip", "white-rose"]
    assert [folder.classes[label] for _, label in folder.samples] == ["red-tulip"] * 4 + ["white-rose"] * 3
    image, _ = folder[0]
    assert image.size == (32, 32)


def test_bad_training_requests_get_field_errors(api, other_api):
    dataset_id = upload(api).json()["id"]
    response = api.post(
        "/api/generators/", {"name": "x", "dataset": dataset_id, "kind": "nope", "resolution": 48}, format="json"
    )
    assert response.status_code == 400
    assert {"kind", "resolution"} <= set(response.json())
    foreign = other_api.post("/api/generators/", {"name": "x", "dataset": dataset_id, "kind": "dcgan"}, format="json")
    assert foreign.status_code == 400 and "dataset" in foreign.json()


def test_too_few_images_is_refused_before_the_run_starts(api, settings):
    settings.SYNTHGEN_MIN_TRAINING_IMAGES = 20
    dataset_id = upload(api, count=5).json()["id"]
    response = api.post("/api/generators/", {"name": "x", "dataset": dataset_id, "kind": "dcgan"}, format="json")
    assert response.status_code == 400
    assert "at least 20" in response.json()["dataset"][0]
    assert not Generator.objects.exists()


@pytest.mark.parametrize("count", [0, -1, 10_000_000])
def test_generation_count_is_bounded(api, count):
    generator = Generator.objects.create(
        owner=_user(api), name="g", kind="dcgan", resolution=32, preset="quick", status="ready"
    )
    response = api.post(f"/api/generators/{generator.pk}/generate/", {"count": count}, format="json")
    assert response.status_code == 400 and "count" in response.json()


def _user(api):
    from rest_framework.authtoken.models import Token

    return Token.objects.get(key=api._credentials["HTTP_AUTHORIZATION"].split()[1]).user


def test_users_do_not_see_each_others_private_objects(api, other_api):
    dataset_id = upload(api).json()["id"]
    assert other_api.get(f"/api/datasets/{dataset_id}/").status_code == 404
    assert other_api.get("/api/datasets/").json()["count"] == 0
    owner = _user(api)
    private = Generator.objects.create(
        owner=owner, name="p", kind="dcgan", resolution=32, preset="quick", status="ready", shared=False
    )
    shared = Generator.objects.create(
        owner=owner, name="s", kind="dcgan", resolution=32, preset="quick", status="ready", shared=True
    )
    assert other_api.get(f"/api/generators/{private.pk}/").status_code == 404
    assert other_api.get(f"/api/generators/{shared.pk}/").status_code == 200
    assert other_api.delete(f"/api/generators/{shared.pk}/").status_code == 403


def test_ddim_trains_and_generates_with_chosen_steps(api, django_capture_on_commit_callbacks):
    dataset_id = upload(api).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/generators/",
            {"name": "diffusion", "dataset": dataset_id, "kind": "ddim", "resolution": 32},
            format="json",
        )
    generator = api.get(f"/api/generators/{response.json()['id']}/").json()
    assert generator["status"] == "ready", generator
    assert generator["uses_sampling_steps"] is True
    # the quality report sampled the way generation does by default
    assert generator["quality"]["sampling"]["steps"] == registry.get("ddim").default_sampling_steps
    with django_capture_on_commit_callbacks(execute=True):
        job = api.post(
            f"/api/generators/{generator['id']}/generate/", {"count": 3, "steps": 2, "filter": False}, format="json"
        )
    job = api.get(f"/api/jobs/{job.json()['id']}/").json()
    assert job["status"] == "done" and job["steps"] == 2 and job["produced"] == 3
    dcgan_steps = api.post(f"/api/generators/{generator['id']}/generate/", {"count": 3, "steps": 0}, format="json")
    assert dcgan_steps.status_code == 400 and "steps" in dcgan_steps.json()


def test_left_out_resolution_and_preset_are_chosen_from_the_dataset(api):
    from apps.generators import recipes

    small = upload(api, count=25).json()["id"]  # 40 px images
    with_defaults = api.post("/api/generators/", {"name": "auto", "dataset": small, "kind": "dcgan"}, format="json")
    assert with_defaults.status_code == 202, with_defaults.content
    assert with_defaults.json()["resolution"] == 32  # most images are under 64 px: no upscaling
    assert with_defaults.json()["preset"] == recipes.suggest_preset(25, "dcgan") == "standard"
    diffusion = api.post("/api/generators/", {"name": "auto-ddim", "dataset": small, "kind": "ddim"}, format="json")
    assert diffusion.json()["preset"] == "quick"  # standard copies small sets (bench/README.md)
    chosen = api.post(
        "/api/generators/", {"name": "big", "dataset": small, "kind": "dcgan", "resolution": 128}, format="json"
    )
    assert chosen.json()["resolution"] == 128
