"""The photo equivalent of a conditional generator's report (issue #19) on its page, in the admin and the API."""

import pytest
from django.urls import reverse

from apps.generators.models import Generator
from apps.generators.presentation import quality_summary
from tests.factories import token_client

pytestmark = pytest.mark.django_db

GAIN = "the generated images are worth about 40 more real photos of the short classes (95 % interval 10–70)"
TOO_SMALL = (
    "no photo count: too few unseen photos of the short classes to count photos: 6, under 10 "
    "(the interval would be too wide to mean anything)"
)


def report(words: str, photos: float | None) -> dict:
    credit = {
        "value": 0.03,
        "reason": None,
        "low": 0.01,
        "high": 0.05,
        "verdict": "gain",
        "words": "adds accuracy beyond augmentation",
    }
    return {
        "verdict": "varied and new",
        "explanation": "x",
        "class": "sandal",
        "classes": {},
        "dataset_usefulness": {
            "credit": credit,
            "photo_equivalent": {
                "photos": photos,
                "low": 10.0 if photos else None,
                "high": 70.0 if photos else None,
                "verdict": "gain" if photos else "not measured",
                "words": words,
            },
        },
    }


@pytest.fixture
def conditional(user):
    return Generator.objects.create(
        owner=user,
        name="shoes",
        kind="ddim",
        resolution=32,
        preset="quick",
        status=Generator.Status.READY,
        classes=[{"name": "sandal", "image_count": 8}, {"name": "bag", "image_count": 120}],
    )


def test_the_summary_says_what_the_generated_images_are_worth():
    assert quality_summary(report(GAIN, 40.0))["photo_equivalent"] == f"Worth in real photos: {GAIN}."
    assert quality_summary(report(TOO_SMALL, None))["photo_equivalent"] == f"Worth in real photos: {TOO_SMALL}."
    assert quality_summary({"verdict": "x", "usefulness": {}})["photo_equivalent"] == ""  # one-class generators


def test_the_summary_names_the_classes_it_could_not_score_and_claims_nothing_for_them():
    quality = report(GAIN, 40.0)
    quality["dataset_usefulness"]["unscored"] = ["sandal", "shirt"]
    useful = quality_summary(quality)["useful"]
    assert useful.startswith("For a classifier of all your classes") and "+3.0 points" in useful
    assert useful.endswith(
        "Not scored: sandal, shirt (no unseen photos were kept back of them); nothing is claimed for them."
    )
    quality["dataset_usefulness"] = {
        "credit": {
            "value": None,
            "reason": "sandal, the classes the generated images are for, kept no unseen photos to test on",
        },
        "unscored": ["sandal"],
    }
    assert "Usefulness was not measured: sandal, the classes" in quality_summary(quality)["useful"]


def test_the_generator_page_and_the_api_show_the_photo_equivalent(client, user, conditional):
    Generator.objects.filter(pk=conditional.pk).update(quality=report(GAIN, 40.0))
    client.force_login(user)
    html = client.get(reverse("generators:detail", args=[conditional.pk])).content.decode()
    assert f'<p id="photo-equivalent">Worth in real photos: {GAIN}.</p>' in html
    body = token_client(user).get(f"/api/generators/{conditional.pk}/").json()
    assert body["quality"]["dataset_usefulness"]["photo_equivalent"]["photos"] == 40.0
    Generator.objects.filter(pk=conditional.pk).update(quality=report(TOO_SMALL, None))
    html = client.get(reverse("generators:detail", args=[conditional.pk])).content.decode()
    assert f"Worth in real photos: {TOO_SMALL}." in html and "worth about" not in html


def test_the_admin_lists_the_photo_equivalent(admin_client, conditional):
    Generator.objects.filter(pk=conditional.pk).update(quality=report(GAIN, 40.0))
    listing = admin_client.get("/admin/generators/generator/").content.decode()
    assert "worth in real photos" in listing.lower() and GAIN in listing
    assert "adds accuracy beyond augmentation: +3.0 points (95 % interval +1.0 to +5.0)" in listing
    Generator.objects.filter(pk=conditional.pk).update(quality=report(TOO_SMALL, None))
    assert TOO_SMALL in admin_client.get("/admin/generators/generator/").content.decode()
