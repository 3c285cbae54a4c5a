"""Balancing a labelled dataset with one class-conditional generator: upload an ImageFolder, train one DDIM on
every class, generate per class (counts, balance_to, class + count, count alone), get an ImageFolder zip."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from torchvision.datasets import ImageFolder

from apps.generators.models import Generator
from tests.factories import png_bytes
from tests.realworker import wait_for

pytestmark = pytest.mark.django_db

CLASSES = {"ankle boot": 6, "bag": 6, "sandal": 3}  # sandal is the short class


def labelled_zip() -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        seed = 0
        for name, count in CLASSES.items():
            for _ in range(count):
                archive.writestr(f"shop/{name}/{seed}.png", png_bytes(seed))
                seed += 1
    return SimpleUploadedFile("shop.zip", buffer.getvalue(), content_type="application/zip")


def train_conditional(api, capture=None):
    dataset = api.post(
        "/api/datasets/", {"name": "shop", "labelled": "true", "archive": labelled_zip()}, format="multipart"
    )
    assert dataset.status_code == 201, dataset.content
    body = {"name": "shop", "dataset": dataset.json()["id"], "kind": "ddim", "resolution": 32, "preset": "quick"}
    if capture is None:
        return api.post("/api/generators/", body, format="json")
    with capture(execute=True):
        response = api.post("/api/generators/", body, format="json")
    return response


def generate(api, generator_id, capture, **body):
    with capture(execute=True):
        job = api.post(f"/api/generators/{generator_id}/generate/", {"filter": False, "seed": 1, **body}, format="json")
    assert job.status_code == 202, job.content
    return api.get(f"/api/jobs/{job.json()['id']}/").json()


def download(api, job, tmp_path) -> ImageFolder:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(api.get(job["download_url"]).streaming_content)))
    out = tmp_path / f"job{job['id']}"
    archive.extractall(out)
    (root,) = out.iterdir()
    assert (root / "manifest.json").is_file()
    return ImageFolder(str(root))


def test_one_generator_learns_every_class_and_balances_the_dataset(api, django_capture_on_commit_callbacks, tmp_path):
    response = train_conditional(api, django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    generator = api.get(f"/api/generators/{response.json()['id']}/").json()
    assert generator["status"] == "ready", generator
    assert generator["classes"] == [{"name": name, "image_count": n} for name, n in CLASSES.items()]
    assert generator["config"]["num_classes"] == 3 and generator["config"]["classes"] == list(CLASSES)
    quality = generator["quality"]
    assert set(quality["classes"]) == set(CLASSES) and quality["class"] == "sandal"  # the shortest class on top
    assert quality["classes"]["sandal"]["sampling"]["class"] == "sandal"
    assert quality["negatives"]["source"] == "the other classes of this dataset"
    balance = quality["dataset_usefulness"]  # 3 photos a class or more, under 40: no held-out photos to test with
    assert balance["credit"]["value"] is None and "held-out photos" in balance["credit"]["reason"]
    assert balance["photo_equivalent"]["photos"] is None and balance["photo_equivalent"]["words"].startswith(
        "no photo count"
    )

    balanced = generate(api, generator["id"], django_capture_on_commit_callbacks, balance_to=6)
    assert balanced["status"] == "done", balanced
    assert balanced["counts"] == {"ankle boot": 0, "bag": 0, "sandal": 3} and balanced["count"] == 3
    folder = download(api, balanced, tmp_path)
    assert folder.classes == ["sandal"] and len(folder.samples) == 3  # only the short class is filled

    chosen = generate(
        api, generator["id"], django_capture_on_commit_callbacks, counts={"bag": 2, "sandal": 1}, guidance=3.0
    )
    folder = download(api, chosen, tmp_path)
    assert chosen["guidance"] == 3.0
    assert sorted(folder.classes[label] for _, label in folder.samples) == ["bag", "bag", "sandal"]

    spread = generate(api, generator["id"], django_capture_on_commit_callbacks, count=4)
    assert spread["counts"] == {"ankle boot": 2, "bag": 1, "sandal": 1}
    one = generate(api, generator["id"], django_capture_on_commit_callbacks, count=2, **{"class": "bag"})
    assert one["counts"] == {"ankle boot": 0, "bag": 2, "sandal": 0}
    # The same seed and class give the same images.
    again = generate(api, generator["id"], django_capture_on_commit_callbacks, count=2, **{"class": "bag"})
    first, second = (
        zipfile.ZipFile(io.BytesIO(b"".join(api.get(j["download_url"]).streaming_content))) for j in (one, again)
    )
    png = lambda z: sorted(n for n in z.namelist() if n.endswith(".png"))  # noqa: E731
    assert [first.read(n) for n in png(first)] == [second.read(n) for n in png(second)]


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"counts": {"shoe": 3}}, "counts", "No class 'shoe'"),
        ({"counts": {"bag": 2}, "count": 2}, "count", "leave count out"),
        ({"balance_to": 6, "class": "bag", "count": 1}, "class", "not balance_to and class"),
        ({"balance_to": 3}, "balance_to", "already has 3 or more"),
        ({"balance_to": 10_000_000}, "balance_to", "ask for between 1 and"),
        ({"count": 2, "class": "shoe"}, "class", "No class 'shoe'"),
        ({"class": "bag"}, "count", "how many images of the class"),
        ({"count": 2, "guidance": 50.0}, "guidance", "less than or equal to 20"),
    ],
)
def test_impossible_class_requests_say_what_to_do(api, user, body, field, words):
    generator = Generator.objects.create(
        owner=user,
        name="g",
        kind="ddim",
        resolution=32,
        preset="quick",
        status="ready",
        classes=[{"name": n, "image_count": c} for n, c in CLASSES.items()],
    )
    response = api.post(f"/api/generators/{generator.pk}/generate/", body, format="json")
    assert response.status_code == 400, response.content
    assert words in str(response.json()[field]), response.json()


def test_class_options_on_a_one_class_generator_are_refused(api, user):
    generator = Generator.objects.create(
        owner=user, name="g", kind="ddim", resolution=32, preset="quick", status="ready"
    )
    response = api.post(f"/api/generators/{generator.pk}/generate/", {"count": 2, "balance_to": 5}, format="json")
    assert response.status_code == 400 and "labelled dataset" in response.json()["balance_to"][0]


def test_a_one_class_type_is_refused_for_a_labelled_dataset(api):
    dataset = api.post(
        "/api/datasets/", {"name": "shop", "labelled": "true", "archive": labelled_zip()}, format="multipart"
    ).json()
    response = api.post("/api/generators/", {"name": "x", "dataset": dataset["id"], "kind": "dcgan"}, format="json")
    assert response.status_code == 400 and "ddim" in response.json()["kind"][0]
    assert not Generator.objects.exists()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_labelled_set_through_a_real_worker(worker, api, tmp_path):
    response = train_conditional(api)
    assert response.status_code == 202, response.content
    generator = wait_for(
        lambda: api.get(f"/api/generators/{response.json()['id']}/").json(),
        lambda g: g["status"] in ("ready", "failed"),
    )
    assert generator["status"] == "ready", generator
    job = api.post(f"/api/generators/{generator['id']}/generate/", {"balance_to": 6, "filter": False}, format="json")
    assert job.status_code == 202, job.content
    job = wait_for(
        lambda: api.get(f"/api/jobs/{job.json()['id']}/").json(), lambda j: j["status"] in ("done", "failed")
    )
    assert job["status"] == "done", job
    folder = download(api, job, tmp_path)
    assert folder.classes == ["sandal"] and len(folder.samples) == 3


def test_the_pages_show_the_classes_and_balance_them(
    client, admin_client, user, api, django_capture_on_commit_callbacks
):
    generator_id = train_conditional(api, django_capture_on_commit_callbacks).json()["id"]
    client.force_login(user)
    page = client.get(f"/generators/{generator_id}/").content.decode()
    assert 'id="classes">3: ankle boot (6 photos), bag (6 photos), sandal (3 photos)' in page
    assert 'id="class-verdicts"' in page and "your class with the fewest photos" in page
    assert (
        "For a classifier of all your classes, with generated images in every class: Usefulness was not measured"
        in page
    )
    assert page.count('<span class="bar-real" style="width: ') == 3  # the bars of the photos per class
    assert 'name="balance_to"' in page and '<option value="sandal">sandal</option>' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/jobs/new/{generator_id}/", {"balance_to": 6, "filter_images": "", "seed": 2})
    assert response.status_code == 302, response.content.decode()[-2000:]
    job = client.get(response["Location"]).content.decode()
    assert "Your dataset before and after this job" in job and "3 + 3 = 6" in job and "6 + 0 = 6" in job
    results = client.get(response["Location"] + "results/").content.decode()
    assert results.count('alt="generated image sandal/') == 3  # the gallery shows the class folders' images
    image = client.get(response["Location"] + "images/sandal/000001.png")
    assert image.status_code == 200 and b"".join(image.streaming_content).startswith(b"\x89PNG")
    assert (
        '<td class="field-class_list">ankle boot, bag, sandal</td>'
        in admin_client.get("/admin/generators/generator/").content.decode()
    )  # the admin lists each generator's classes
    refused = client.post(f"/jobs/new/{generator_id}/", {"balance_to": 3, "filter_images": ""})
    assert refused.status_code == 200 and "Every class already has 3 or more photos" in refused.content.decode()
