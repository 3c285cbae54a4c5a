"""Issue #21: a zip with a folder per class is never silently taken as one class.

The API warns when ``labelled`` was left out and the zip has class folders; a dataset's labelling can be
changed after the upload (re-read from each image's path in the zip); the wizard does not train on a
dataset whose labelling was not chosen; step 1's advanced box does not start with ``null`` in it.
"""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.errors import InvalidInput
from apps.datasets import labels, services
from apps.datasets.models import Dataset, DatasetImage
from apps.generators.models import Generator
from tests.factories import image_uploads, png_bytes

pytestmark = pytest.mark.django_db


def zip_upload(members: dict[str, bytes], name: str = "photos.zip") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def three_classes(root: str = "") -> dict[str, bytes]:
    counts = {"apple": 3, "banana": 2, "cherry": 4}
    members, seed = {}, 0
    for cls, n in counts.items():
        for i in range(n):
            members[f"{root}{cls}/{i}.png"] = png_bytes(seed)
            seed += 1
    return members


def post(api, archive, **fields):
    return api.post("/api/datasets/", {"name": "fruit", "archive": archive, **fields}, format="multipart")


# --- detection ------------------------------------------------------------------------------------


def test_folder_classes_reads_class_folders_and_nothing_else():
    assert labels.folder_classes(["a/1.png", "a/2.png", "b/3.png"]) == {"a": 2, "b": 1}
    assert labels.folder_classes(["shop/a/1.png", "shop/b/2.png"]) == {"a": 1, "b": 1}  # wrapping folder dropped
    assert labels.folder_classes(["photos/1.png", "photos/2.png"]) == {}  # one folder: one class
    assert labels.folder_classes(["a/1.png", "b/2.png", "stray.png"]) == {}  # not every image in a folder
    assert labels.folder_classes(["1.png", "2.png"]) == {}
    assert labels.folder_classes([]) == {}


# --- the API's warning ----------------------------------------------------------------------------


def test_class_folder_zip_without_labelled_is_one_class_with_a_warning(api):
    response = post(api, zip_upload(three_classes()))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["labelled"] is False and body["image_count"] == 9 and body["classes"] == []
    assert body["warnings"] == [
        "the zip has 3 class folders (apple, banana, cherry) but labelled was not set: the images were taken as "
        "one class; send labelled=true to keep the classes"
    ]


def test_wrapped_class_folders_are_noticed_too(api):
    body = post(api, zip_upload(three_classes("fruit/"))).json()
    assert len(body["warnings"]) == 1 and "3 class folders (apple, banana, cherry)" in body["warnings"][0]


@pytest.mark.parametrize(
    "members",
    [
        {f"photos/{i}.png": png_bytes(i) for i in range(4)},  # one folder
        {f"{i}.png": png_bytes(i) for i in range(4)},  # no folder
    ],
)
def test_a_plain_zip_has_no_warning(api, members):
    body = post(api, zip_upload(members)).json()
    assert body["labelled"] is False and body["warnings"] == []


def test_no_warning_when_labelled_is_said_either_way(api):
    unlabelled = post(api, zip_upload(three_classes()), labelled="false").json()
    assert unlabelled["labelled"] is False and unlabelled["warnings"] == []
    labelled = post(api, zip_upload(three_classes()), labelled="true").json()
    assert labelled["labelled"] is True and labelled["warnings"] == []
    assert [c["image_count"] for c in labelled["classes"]] == [3, 2, 4]


def test_adding_images_answers_warnings_too(api):
    dataset_id = post(api, zip_upload({f"{i}.png": png_bytes(i) for i in range(2)})).json()["id"]
    response = api.post(
        f"/api/datasets/{dataset_id}/images/", {"images": image_uploads(1, start=50)}, format="multipart"
    )
    assert response.status_code == 200 and response.json()["warnings"] == []


def test_the_schema_documents_warnings(client):
    schema = client.get("/api/schema/?format=json").json()
    created = schema["components"]["schemas"]["DatasetCreated"]
    assert created["properties"]["warnings"]["type"] == "array"
    assert "warnings" in created["required"]


# --- re-labelling ---------------------------------------------------------------------------------


def test_relabel_reads_the_classes_from_the_zip_paths_and_back(user):
    dataset, _ = services.create_dataset(owner=user, name="fruit", archive=zip_upload(three_classes("fruit/")))
    assert dataset.labelled is False and set(dataset.images.values_list("label", flat=True)) == {""}
    assert services.labelling_question(dataset).startswith(
        "The zip has 3 class folders: apple (3), banana (2), cherry (4)."
    )

    assert services.relabel_dataset(dataset=dataset, labelled=True) == []
    dataset.refresh_from_db()
    assert dataset.labelled is True
    assert dataset.class_counts() == {"apple": 3, "banana": 2, "cherry": 4}
    assert services.labelling_question(dataset) is None
    # The same as uploading it labelled in the first place.
    fresh, _ = services.create_dataset(
        owner=user, name="again", archive=zip_upload(three_classes("fruit/")), labelled=True
    )
    assert fresh.class_counts() == dataset.class_counts()

    services.relabel_dataset(dataset=dataset, labelled=False)
    dataset.refresh_from_db()
    assert dataset.labelled is False and dataset.images.count() == 9
    assert set(dataset.images.values_list("label", flat=True)) == {""}


def test_relabel_leaves_out_small_classes_as_an_upload_does(user):
    members = {**three_classes(), "lonely/0.png": png_bytes(99)}
    dataset, _ = services.create_dataset(owner=user, name="fruit", archive=zip_upload(members))
    rejected = services.relabel_dataset(dataset=dataset, labelled=True)
    assert [r["file"] for r in rejected] == ["lonely/"]
    assert Dataset.objects.get(pk=dataset.pk).class_counts() == {"apple": 3, "banana": 2, "cherry": 4}


def test_relabel_refuses_images_outside_a_class_folder_and_changes_nothing(user):
    dataset, _ = services.create_dataset(owner=user, name="loose", files=image_uploads(4))
    with pytest.raises(InvalidInput) as error:
        services.relabel_dataset(dataset=dataset, labelled=True)
    assert "4 of 4 images are not in a usable class folder" in error.value.errors["labelled"][0]
    dataset.refresh_from_db()
    assert dataset.labelled is False and set(dataset.images.values_list("label", flat=True)) == {""}


def test_relabel_refuses_one_class_and_rolls_back(user):
    members = {**{f"cat/{i}.png": png_bytes(i) for i in range(3)}, "dog/0.png": png_bytes(9)}
    dataset, _ = services.create_dataset(owner=user, name="pets", archive=zip_upload(members))
    with pytest.raises(InvalidInput) as error:
        services.relabel_dataset(dataset=dataset, labelled=True)
    assert "at least 2 classes" in error.value.errors["labelled"][0]
    assert dataset.labelled is False
    assert Dataset.objects.get(pk=dataset.pk).labelled is False
    assert DatasetImage.objects.filter(dataset=dataset).count() == 4  # the dog is still there
    assert set(DatasetImage.objects.values_list("label", flat=True)) == {""}


def test_relabel_refuses_a_dataset_a_generator_was_trained_on(user):
    dataset, _ = services.create_dataset(owner=user, name="fruit", archive=zip_upload(three_classes()))
    Generator.objects.create(owner=user, name="g", kind="dcgan", resolution=32, dataset=dataset, preset="quick")
    with pytest.raises(InvalidInput):
        services.relabel_dataset(dataset=dataset, labelled=True)
    assert Dataset.objects.get(pk=dataset.pk).labelled is False


# --- the web pages (Django's test client: the wizard without JavaScript, the review fragment) -------

import re  # noqa: E402
from html import unescape  # noqa: E402

from django.urls import reverse  # noqa: E402


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def advanced_box(html: str) -> str:
    return unescape(re.search(r'<textarea name="options"[^>]*>(.*?)</textarea>', html, re.S).group(1))


def test_the_advanced_box_opens_empty_also_when_coming_back_from_step_two(logged_in):
    page = logged_in.get(reverse("generators:wizard")).content.decode()
    assert advanced_box(page).strip() == ""
    assert "null" not in advanced_box(page)
    logged_in.post(reverse("generators:wizard"), {"name": "x", "kind": "dcgan", "resolution": 32})
    again = logged_in.get(reverse("generators:wizard")).content.decode()  # "Back to step 1"
    assert advanced_box(again).strip() == "" and '<details class="advanced" >' in again
    logged_in.post(
        reverse("generators:wizard"), {"name": "x", "kind": "dcgan", "resolution": 32, "options": '{"total_steps": 5}'}
    )
    assert '{"total_steps": 5}' in advanced_box(logged_in.get(reverse("generators:wizard")).content.decode())


def test_start_page_and_step_one_describe_both_uses(logged_in):
    for url in ("/", reverse("generators:wizard")):
        html = logged_in.get(url).content.decode()
        assert "More images of one class" in html and "Balance a labelled dataset" in html
        assert "folder per class" in html and "cherry/" in html
    assert "Upload 150–1,000 photos of one thing —" not in logged_in.get("/").content.decode()


def test_wizard_without_javascript_asks_before_training_a_class_folder_zip(
    logged_in, django_capture_on_commit_callbacks
):
    logged_in.post(reverse("generators:wizard"), {"name": "fruit", "kind": "ddim", "resolution": 32, "preset": "quick"})
    step2 = logged_in.get(reverse("generators:wizard-data")).content.decode()
    # The question comes before the drop zone, and nothing is chosen for the user.
    assert step2.index('name="labelling"') < step2.index('id="dropzone"')
    assert (
        'name="labelling" value="one"' in step2
        and "checked" not in step2.split('id="dropzone"')[0].split("labelling")[-1]
    )
    response = logged_in.post(
        reverse("generators:wizard-data"), {"archive": zip_upload(three_classes()), "augment": "on"}
    )
    html = response.content.decode()
    assert response.status_code == 200 and not Generator.objects.exists()
    assert "The zip has 3 class folders: apple (3), banana (2), cherry (4)." in html
    dataset = Dataset.objects.get()
    assert dataset.labelled is False
    assert f'<option value="{dataset.pk}" selected>' in html  # the upload is kept; only the answer is missing

    with django_capture_on_commit_callbacks(execute=False):
        started = logged_in.post(
            reverse("generators:wizard-data"), {"dataset": dataset.pk, "labelling": "classes", "augment": "on"}
        )
    assert started.status_code == 302
    dataset.refresh_from_db()
    assert dataset.labelled is True and dataset.class_counts() == {"apple": 3, "banana": 2, "cherry": 4}
    assert Generator.objects.get().dataset == dataset


def test_wizard_without_javascript_takes_one_class_when_told_so(logged_in, django_capture_on_commit_callbacks):
    logged_in.post(
        reverse("generators:wizard"), {"name": "fruit", "kind": "dcgan", "resolution": 32, "preset": "quick"}
    )
    with django_capture_on_commit_callbacks(execute=False):
        response = logged_in.post(
            reverse("generators:wizard-data"),
            {"archive": zip_upload(three_classes()), "labelling": "one", "augment": "on"},
        )
    assert response.status_code == 302
    assert Generator.objects.get().dataset.labelled is False


def test_review_fragment_shows_the_classes_or_asks(logged_in, user):
    dataset, _ = services.create_dataset(owner=user, name="fruit", archive=zip_upload(three_classes()))
    url = reverse("datasets:review", args=[dataset.pk]) + "?resolution=32"
    asked = logged_in.get(url + "&ask=1").content.decode()
    assert 'data-question="1"' in asked and "One class, or a folder per class?" in asked
    assert "<strong>apple</strong>: 3 images" in asked and "<strong>cherry</strong>: 4 images" in asked
    assert "Use the 3 folders as classes" in asked and "Take them as one class" in asked
    told = logged_in.get(url).content.decode()
    assert "data-question" not in told and "although the zip has 3 class folders" in told

    answer = logged_in.post(reverse("datasets:labelling", args=[dataset.pk]) + "?resolution=32", {"labelled": "true"})
    html = answer.content.decode()
    assert answer.status_code == 200 and 'data-labelled="true"' in html
    assert "<strong>3 classes</strong>" in html and "<strong>banana</strong>: 2 images" in html
    assert "Take them as one class instead" in html
    assert Dataset.objects.get(pk=dataset.pk).labelled is True


def test_the_labelling_answer_says_why_it_cannot_change(logged_in, user, other_user, client):
    loose, _ = services.create_dataset(owner=user, name="loose", files=image_uploads(4))
    url = reverse("datasets:labelling", args=[loose.pk])
    refused = logged_in.post(url, {"labelled": "true"})
    assert refused.status_code == 400 and "not in a usable class folder" in refused.content.decode()
    assert logged_in.post(url, {"labelled": "maybe"}).status_code == 400
    assert logged_in.get(url).status_code == 405
    client.force_login(other_user)
    assert client.post(url, {"labelled": "false"}).status_code == 404


def test_a_one_class_generator_type_is_pointed_out_for_a_labelled_dataset(logged_in, user):
    dataset, _ = services.create_dataset(owner=user, name="fruit", archive=zip_upload(three_classes()), labelled=True)
    url = reverse("datasets:review", args=[dataset.pk]) + "?resolution=32&kind="
    assert "DCGAN (fast, GAN) learns one class" in logged_in.get(url + "dcgan").content.decode()
    assert "learns one class" not in logged_in.get(url + "ddim").content.decode()


def test_a_dataset_trained_on_already_is_not_asked_about_again(logged_in, user):
    dataset, _ = services.create_dataset(owner=user, name="fruit", archive=zip_upload(three_classes()))
    Generator.objects.create(owner=user, name="g", kind="dcgan", resolution=32, dataset=dataset, preset="quick")
    assert services.labelling_question(dataset) is None
    html = logged_in.get(reverse("datasets:review", args=[dataset.pk]) + "?ask=1").content.decode()
    assert "data-question" not in html and "although the zip has 3 class folders" in html
    assert "Use the 3 folders as classes" not in html
