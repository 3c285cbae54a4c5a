"""The web pages through Django's test client (tasks run eagerly on tiny models): the wizard without
JavaScript, the dataset review and augmentation preview, the generator page, sharing, the job page;
and the plain helpers behind them (dataset warnings, quality summary)."""

import io

import pytest
from django.urls import reverse
from PIL import Image

from apps.datasets import services as dataset_services
from apps.datasets.review import ImageFacts, dataset_warnings
from apps.generation.models import GenerationJob
from apps.generators.models import Generator, TrainingRun
from apps.generators.presentation import quality_summary, stage_label
from apps.ml.engine import registry
from tests.factories import image_uploads, png_bytes

pytestmark = pytest.mark.django_db


def facts(n, size=(200, 200), mode="RGB", prefix="img"):
    return [ImageFacts(f"{prefix}{i}.png", size[0], size[1], mode) for i in range(n)]


# --- dataset warnings (plain function) ----------------------------------------------------------


def test_a_consistent_set_of_200_images_gets_no_warning():
    assert dataset_warnings(facts(200), resolution=64) == []


def test_small_sets_are_warned_about_with_what_to_do(settings):
    settings.SYNTHGEN_MIN_TRAINING_IMAGES = 20
    too_few, small = dataset_warnings(facts(10)), dataset_warnings(facts(100))
    assert "training needs at least 20" in too_few[0]
    assert "Only 100 images" in small[0] and "150 or more" in small[0]


def test_grayscale_mixed_with_colour_is_named():
    warnings = dataset_warnings(facts(190) + facts(10, mode="L", prefix="gray"))
    assert len(warnings) == 1
    assert warnings[0].startswith("10 of 200 images are grayscale") and "gray0.png" in warnings[0]


def test_odd_shapes_and_uneven_sizes_and_small_images():
    images = facts(196) + [ImageFacts("wide.png", 800, 200, "RGB")] + facts(3, size=(40, 40), prefix="tiny")
    warnings = dataset_warnings(images, resolution=64)
    assert any("1 of 200 images have a different shape" in w and "wide.png (800×200)" in w for w in warnings)
    assert any("shorter side goes from 40 px to 200 px" in w for w in warnings)
    assert any("3 of 200 images are smaller than the 64 px" in w and "tiny0.png" in w for w in warnings)


# --- quality summary (plain function) -----------------------------------------------------------


def test_quality_summary_of_a_report_and_of_none():
    assert quality_summary(None) is None
    report = {
        "verdict": "repeats itself",
        "explanation": "The generated images are only 40% as varied as your photos.",
        "diversity": {"value": 0.4, "reason": None},
        "copy_share": {"value": 0.05, "reason": None, "threshold": 0.1},
        "fid": {"value": 12.345, "reason": None, "reference": 8.1},
        "kid": {"value": None, "reason": "needs at least two generated and two real images"},
        "usefulness": {"real": {"value": 0.8, "reason": None}, "gqi": {"value": None, "reason": "no held-out images"}},
    }
    summary = quality_summary(report)
    assert summary["verdict"] == "repeats itself"
    rows = {row.label: row for row in summary["rows"]}
    assert rows["Pixel variety"].value == "0.40"
    assert rows["Near-copies of your photos"].value == "5%"
    assert (rows["FID"].value, rows["FID"].reference) == ("12.3", "8.1")
    assert rows["KID"].value == "not measured (needs at least two generated and two real images)"
    assert [row.label for row in summary["usefulness"]] == ["Classifier trained on your photos"]
    assert summary["filtered"] == ""  # no filter record in this report
    report["filter"] = {"checked": 500, "kept": 480, "dropped": {"noise": 8, "blank": 2, "copy": 10}}
    assert quality_summary(report)["filtered"] == (
        "The filter kept 480 of 500 generated images; it left out 8 as mostly noise, 2 as blank, "
        "10 as near-copies of your photos."
    )
    report["filter"]["dropped"] = {"noise": 0, "blank": 0, "copy": 0}
    assert quality_summary(report)["filtered"] == "The filter kept 480 of 500 generated images."


def test_quality_summary_says_in_words_what_the_credit_interval_says():
    from apps.generators import presentation
    from apps.ml.quality.report import POSITIVE_VERDICT

    assert presentation.POSITIVE_VERDICT == POSITIVE_VERDICT
    report = {
        "verdict": "not realistic yet",
        "explanation": "x",
        "advice": "Train longer.",
        "usefulness": {"credit": {"value": 0.004, "reason": None, "low": -0.01, "high": 0.02, "verdict": "none"}},
        "negatives": {"source": "your other datasets", "classes": 2, "images": 40, "dropped_as_duplicates": 3},
    }
    summary = quality_summary(report)
    assert not summary["positive"] and summary["advice"] == "Train longer."
    assert summary["useful"].startswith("The generated images give no measurable gain beyond augmentation")
    assert "+0.4 points" in summary["useful"] and "-1.0 to +2.0" in summary["useful"]
    assert "3 left out as duplicates of your own photos" in summary["negatives"]
    report["usefulness"]["credit"] |= {"value": 0.03, "low": 0.01, "high": 0.05, "verdict": "gain"}
    assert quality_summary(report)["useful"].startswith("The generated images add accuracy beyond augmentation")
    report["usefulness"]["credit"] |= {"value": -0.03, "low": -0.05, "high": -0.01, "verdict": "loss"}
    assert quality_summary(report)["useful"].startswith("The generated images hurt")


def test_stage_label_says_what_a_run_is_doing_or_that_it_stopped():
    assert stage_label("running", "train") == "Training"
    assert stage_label("queued", "queued") == "Waiting for a free worker"
    assert stage_label("cancelled", "train") == "Cancelled"
    assert stage_label("failed", "prepare") == "Failed while resizing your images"
    assert stage_label("running", "something new") == "something new"


# --- pages ------------------------------------------------------------------------------------


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def dataset(user):
    uploads = image_uploads(6) + [
        # a grayscale image and a wide one, so the review has something to say
        _upload("gray.png", png_bytes(50, mode="L")),
        _upload("wide.png", _png(Image.new("RGB", (160, 40), (200, 30, 30)))),
    ]
    return dataset_services.create_dataset(owner=user, name="ellipses", files=uploads)[0]


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(name, data):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="image/png")


def test_review_fragment_shows_warnings_thumbnails_and_preview(logged_in, dataset):
    response = logged_in.get(reverse("datasets:review", args=[dataset.pk]) + "?resolution=32")
    html = response.content.decode()
    assert response.status_code == 200
    assert "8 images" in html and "(7 colour, 1 grayscale)" in html
    assert "Only 8 images" in html and "1 of 8 images are grayscale" in html and "wide.png (160×40)" in html
    assert html.count("?thumb=1") == 8
    assert reverse("datasets:augmentation-preview", args=[dataset.pk]) + "?resolution=32" in html


def test_augmentation_preview_is_a_grid_of_originals_and_copies(logged_in, dataset):
    response = logged_in.get(reverse("datasets:augmentation-preview", args=[dataset.pk]) + "?resolution=32")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    grid = Image.open(io.BytesIO(response.content))
    # 4 images across, the originals and 3 augmented copies down; 32 px shown at 96 px, 4 px apart.
    assert grid.size == (4 * (96 + 4) + 4, 4 * (96 + 4) + 4)
    pixels = grid.convert("RGB")
    top_row = pixels.crop((4, 4, 100, 100)).tobytes()
    assert pixels.crop((4, 104, 100, 200)).tobytes() != top_row  # a copy differs from its original


def test_thumbnail_is_small(logged_in, dataset):
    image = dataset.images.get(original_name="wide.png")
    response = logged_in.get(reverse("datasets:image", args=[image.pk]) + "?thumb=1")
    assert Image.open(io.BytesIO(response.content)).size == (96, 24)


def test_other_users_cannot_see_a_dataset_review(client, other_user, dataset):
    client.force_login(other_user)
    assert client.get(reverse("datasets:review", args=[dataset.pk])).status_code == 404
    assert client.get(reverse("datasets:augmentation-preview", args=[dataset.pk])).status_code == 404


def test_step_two_without_step_one_sends_you_to_step_one(logged_in):
    response = logged_in.get(reverse("generators:wizard-data"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("generators:wizard")
    assert "Start with step 1" in response.content.decode()


def test_wizard_without_javascript_uploads_trains_and_shows_the_generator(
    logged_in, user, other_user, client, django_capture_on_commit_callbacks
):
    step1 = logged_in.get(reverse("generators:wizard")).content.decode()
    assert 'type="radio" name="kind" value="dcgan"' in step1 and "<legend>Generator type</legend>" in step1
    response = logged_in.post(
        reverse("generators:wizard"),
        {"name": "ellipses", "kind": "dcgan", "resolution": 32, "preset": "quick", "shared": "on"},
    )
    assert response.status_code == 302 and response["Location"] == reverse("generators:wizard-data")
    step2 = logged_in.get(response["Location"]).content.decode()
    assert "DCGAN (fast, GAN) · 32 × 32 px" in step2 and 'id="dropzone"' in step2
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in.post(
            reverse("generators:wizard-data"),
            {"images": image_uploads(6) + [_upload("notes.png", b"hello, not an image")], "augment": "on"},
        )
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("generators:run", args=[run.pk])
    run_page = logged_in.get(response["Location"]).content.decode()
    assert "Skipped notes.png: not an image" in run_page
    assert 'id="run-status" class="badge status-done">done<' in run_page and "Generate images" in run_page

    generator = Generator.objects.get()
    page = logged_in.get(reverse("generators:detail", args=[generator.pk])).content.decode()
    assert "Sample images from ellipses" in page and "alice (you)" in page and "every user (shared)" in page
    assert 'name="steps"' not in page  # a GAN takes no sampling steps
    assert "Make private" in page

    # Only the owner can unshare it; then nobody else sees it.
    client.force_login(other_user)
    assert client.post(reverse("generators:share", args=[generator.pk]), {"shared": "0"}).status_code == 403
    logged_in.force_login(user)
    logged_in.post(reverse("generators:share", args=[generator.pk]), {"shared": "0"})
    assert Generator.objects.get().shared is False
    client.force_login(other_user)
    assert client.get(reverse("generators:detail", args=[generator.pk])).status_code == 404


def test_wizard_refuses_a_dataset_that_is_too_small_and_says_what_to_do(logged_in, user, settings):
    settings.SYNTHGEN_MIN_TRAINING_IMAGES = 20
    small = dataset_services.create_dataset(owner=user, name="few", files=image_uploads(3))[0]
    logged_in.post(reverse("generators:wizard"), {"name": "few", "kind": "dcgan", "resolution": 32})
    response = logged_in.post(reverse("generators:wizard-data"), {"dataset": small.pk})
    html = response.content.decode()
    assert response.status_code == 200
    assert "This dataset has 3 images; training needs at least 20" in html
    assert f'<option value="{small.pk}" selected>' in html  # the choice is kept
    assert not Generator.objects.exists()


@pytest.fixture
def ready_generator(user, dataset, django_capture_on_commit_callbacks):
    from apps.generators import services

    with django_capture_on_commit_callbacks(execute=True):
        generator = services.start_training(
            owner=user, name="ellipses", dataset=dataset, kind="dcgan", resolution=32, preset="quick"
        )
    generator.refresh_from_db()
    assert generator.is_ready
    return generator


def test_generate_form_errors_say_what_to_do(logged_in, ready_generator):
    response = logged_in.post(reverse("generation:start", args=[ready_generator.pk]), {"count": 0})
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    assert not GenerationJob.objects.exists()


def test_a_report_that_is_not_positive_is_never_green(logged_in, ready_generator):
    Generator.objects.filter(pk=ready_generator.pk).update(
        quality={
            "verdict": "not realistic yet",
            "explanation": "The generated images do not look like your photos yet.",
            "advice": "Train longer (the standard or long preset).",
        }
    )
    html = logged_in.get(reverse("generators:detail", args=[ready_generator.pk])).content.decode()
    assert '<p class="verdict message warning"><strong>Not realistic yet.</strong>' in html
    assert "Train longer (the standard or long preset)." in html


def test_quality_report_is_shown_when_present(logged_in, ready_generator):
    Generator.objects.filter(pk=ready_generator.pk).update(
        quality={
            "verdict": "varied and new",
            "explanation": "The generated images are varied.",
            "diversity": {"value": 0.93, "reason": None},
            "filter": {"checked": 500, "kept": 497, "dropped": {"noise": 3, "blank": 0, "copy": 0}},
        }
    )
    html = logged_in.get(reverse("generators:detail", args=[ready_generator.pk])).content.decode()
    assert "Quality report" in html and "<strong>Varied and new.</strong>" in html and "0.93" in html
    assert "The filter kept 497 of 500 generated images; it left out 3 as mostly noise." in html


def test_the_closest_generated_and_training_pairs_are_shown_side_by_side(logged_in, ready_generator):
    html = logged_in.get(reverse("generators:detail", args=[ready_generator.pk])).content.decode()
    url = reverse("generators:copies-grid", args=[ready_generator.pk])
    assert "Closest to your photos" in html and url in html
    grid = logged_in.get(url)
    assert grid.status_code == 200 and b"".join(grid.streaming_content).startswith(b"\x89PNG")


def test_generation_job_page_gallery_and_zip(logged_in, ready_generator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in.post(
            reverse("generation:start", args=[ready_generator.pk]), {"count": 5, "seed": 7}
        )  # the filter is off: tiny models make noise
    job = GenerationJob.objects.get()
    assert response["Location"] == reverse("generation:job", args=[job.pk])
    assert (job.status, job.seed) == ("done", 7)
    page = logged_in.get(response["Location"]).content.decode()
    results = logged_in.get(reverse("generation:results", args=[job.pk])).content.decode()
    for html in (page, results):
        assert html.count('alt="generated image') == 5
        assert "Download all 5 images (zip)" in html
    download = logged_in.get(reverse("generation:download", args=[job.pk]))
    assert download["Content-Disposition"].startswith("attachment")


def test_a_diffusion_generator_page_asks_for_sampling_steps(logged_in, user):
    generator = Generator.objects.create(
        owner=user, name="noise", kind="ddim", resolution=32, preset="quick", status=Generator.Status.READY
    )
    html = logged_in.get(reverse("generators:detail", args=[generator.pk])).content.decode()
    assert '<label for="id_steps">Sampling steps</label>' in html
    assert f'name="steps" value="{registry.get("ddim").default_sampling_steps}"' in html  # the type's default


def test_owner_deletes_a_generator(logged_in, ready_generator):
    response = logged_in.post(reverse("generators:delete", args=[ready_generator.pk]), follow=True)
    assert "Deleted the generator “ellipses”." in response.content.decode()
    assert not Generator.objects.exists()


def test_wizard_advanced_settings_are_checked_and_reach_the_generator(
    logged_in, dataset, django_capture_on_commit_callbacks
):
    step1 = {"name": "tuned", "kind": "dcgan", "resolution": 32, "preset": "quick", "shared": "on"}
    page = logged_in.get(reverse("generators:wizard")).content.decode()
    assert "Advanced settings" in page and "total_steps" in page  # each type's settings are listed
    bad = logged_in.post(reverse("generators:wizard"), {**step1, "options": '{"total_steps": "many", "nope": 1}'})
    assert bad.status_code == 200
    html = bad.content.decode()
    assert "&#x27;nope&#x27; is not a setting of dcgan" in html and "&#x27;total_steps&#x27; must be like" in html
    assert logged_in.post(reverse("generators:wizard"), {**step1, "options": '{"total_steps": 5}'}).status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        started = logged_in.post(reverse("generators:wizard-data"), {"dataset": dataset.pk, "augment": ""})
    assert started.status_code == 302
    generator = Generator.objects.get(name="tuned")
    assert generator.options == {"total_steps": 5} and generator.config["total_steps"] == 5
