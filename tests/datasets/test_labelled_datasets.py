"""Labelled datasets: an ImageFolder zip (a folder per class) or files with a label each, through the API."""

import io
import unicodedata
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.datasets.models import Dataset, DatasetImage
from tests.factories import image_uploads, png_bytes

pytestmark = pytest.mark.django_db


def image_folder_zip(members: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return SimpleUploadedFile("classes.zip", buffer.getvalue(), content_type="application/zip")


def upload(api, archive=None, **fields):
    body = {"name": "shoes", "labelled": "true", **fields}
    if archive is not None:
        body["archive"] = archive
    return api.post("/api/datasets/", body, format="multipart")


def test_an_image_folder_zip_becomes_one_dataset_with_its_classes(api, settings):
    brulee = unicodedata.normalize("NFD", "crème brûlée")
    members = {
        **{f"shop/ankle boot/{i}.png": png_bytes(i) for i in range(3)},
        **{f"shop/{brulee}/{i}.png": png_bytes(10 + i) for i in range(2)},
        **{f"shop/sandal/summer/{i}.png": png_bytes(20 + i) for i in range(2)},  # nested: still "sandal"
        "__MACOSX/shop/sandal/._0.png": b"resource fork",
        "shop/.DS_Store": b"finder",
        "shop/notes.txt": b"not an image",
        "shop/lonely/0.png": png_bytes(30),  # a class of one image: reported, left out
    }
    response = upload(api, image_folder_zip(members))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["labelled"] is True and body["image_count"] == 7
    assert body["classes"] == [
        {"name": "ankle boot", "image_count": 3},
        {"name": "crème brûlée", "image_count": 2},
        {"name": "sandal", "image_count": 2},
    ]
    reasons = {r["file"]: r["reason"] for r in body["rejected"]}
    assert "not an image file type" in reasons["shop/notes.txt"]
    assert "fewer than 2 images" in reasons["lonely/"]
    assert set(DatasetImage.objects.values_list("label", flat=True)) == {"ankle boot", "crème brûlée", "sandal"}
    assert api.get(f"/api/datasets/{body['id']}/").json()["classes"] == body["classes"]


def test_images_outside_a_class_folder_and_bad_class_names_are_reported(api):
    members = {
        **{f"cat/{i}.png": png_bytes(i) for i in range(2)},
        **{f"dog/{i}.png": png_bytes(10 + i) for i in range(2)},
        "stray.png": png_bytes(40),
        f"{'x' * 65}/0.png": png_bytes(41),
    }
    body = upload(api, image_folder_zip(members)).json()
    reasons = {r["file"]: r["reason"] for r in body["rejected"]}
    assert "not inside a class folder" in reasons["stray.png"]
    assert "over 64" in reasons[f"{'x' * 65}/0.png"]
    assert [c["name"] for c in body["classes"]] == ["cat", "dog"]


def test_one_usable_class_is_refused_and_nothing_is_stored(api, settings):
    members = {**{f"cat/{i}.png": png_bytes(i) for i in range(3)}, "dog/0.png": png_bytes(9)}
    response = upload(api, image_folder_zip(members))
    assert response.status_code == 400
    assert "at least 2 classes" in response.json()["archive"][0]
    assert not Dataset.objects.exists() and not DatasetImage.objects.exists()
    media = settings.MEDIA_ROOT
    assert not any(p.is_file() for p in media.rglob("*")) if media.exists() else True


def test_files_with_a_label_each(api):
    response = upload(api, images=image_uploads(4), labels=["cat", "cat", "dog", "dog"])
    assert response.status_code == 201, response.content
    assert response.json()["classes"] == [{"name": "cat", "image_count": 2}, {"name": "dog", "image_count": 2}]


def test_labels_that_do_not_match_the_files_say_what_to_do(api):
    response = upload(api, images=image_uploads(3), labels=["cat", "dog"])
    assert response.status_code == 400 and "one `labels` entry per image" in response.json()["labels"][0]
    unlabelled = api.post(
        "/api/datasets/", {"name": "x", "images": image_uploads(2), "labels": ["a", "b"]}, format="multipart"
    )
    assert unlabelled.status_code == 400 and "labelled=true" in unlabelled.json()["labels"][0]
    assert not Dataset.objects.exists()


def test_unlabelled_uploads_work_as_before(api):
    body = api.post("/api/datasets/", {"name": "x", "images": image_uploads(2)}, format="multipart").json()
    assert body["labelled"] is False and body["classes"] == [] and body["image_count"] == 2
