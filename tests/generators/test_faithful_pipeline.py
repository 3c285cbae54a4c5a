"""Faithful images (#18) through the app: the prepare stage records which way the photos face, the augment
stage, the recipe and the report's classifier follow it, and the pages and the API say what it means."""

import io

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.core import storage
from apps.datasets import services as dataset_services
from apps.datasets.orientation import dataset_orientation
from apps.generators import evaluation
from apps.generators.models import Generator, TrainingRun
from apps.generators.stages import data
from apps.generators.stages import training as train_stage
from apps.ml.engine.checkpoint import load_tensors
from tests.factories import NoTraining
from tests.ml.constructed import discs, facing_other_way, wedges

pytestmark = pytest.mark.django_db


def uploads(images: torch.Tensor, prefix: str) -> list[SimpleUploadedFile]:
    files = []
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image[0].numpy(), mode="L").resize((48, 48), Image.Resampling.NEAREST).save(buffer, "PNG")
        files.append(SimpleUploadedFile(f"{prefix}{i}.png", buffer.getvalue(), content_type="image/png"))
    return files


def trained_through_the_stages(user, monkeypatch, images: torch.Tensor, name: str):
    """prepare -> augment -> train (without the training itself) on ``images``: the generator, and the
    training set the augment stage made (uint8)."""
    dataset, rejected = dataset_services.create_dataset(owner=user, name=name, files=uploads(images, name))
    assert len(rejected) < len(images) // 4  # a few drawn twice are duplicates
    generator = Generator.objects.create(
        owner=user, name=name, kind="ddim", resolution=32, channels=1, preset="quick", augment=True, dataset=dataset
    )
    run = TrainingRun.objects.create(generator=generator, status=TrainingRun.Status.RUNNING, stage="prepare")
    with storage.scratch("prepare") as work:
        data._prepare(TrainingRun.objects.get(pk=run.pk), work)
    with storage.scratch("augment") as work:
        data._augment(TrainingRun.objects.get(pk=run.pk), work)
        storage.fetch_file(storage.run_file(run.pk, storage.RUN_TRAINING), work / "training.safetensors")
        training = load_tensors(work / "training.safetensors")["images"]
    monkeypatch.setattr(train_stage.registry, "get", lambda kind: NoTraining)
    with storage.scratch("train") as work:
        train_stage._train(TrainingRun.objects.get(pk=run.pk), work)
    return Generator.objects.get(pk=generator.pk), training


def test_one_way_photos_get_no_mirror_image_anywhere(user, monkeypatch, settings):
    settings.SYNTHGEN_TRAINING_OVERRIDES = {}
    photos = wedges(n=40, size=32)
    generator, training = trained_through_the_stages(user, monkeypatch, photos, "wedges")
    assert generator.orientation["mirrors"] is False and generator.orientation["images"] > 20
    prepared = training[: generator.orientation["images"]]
    copies = training[generator.orientation["images"] :]
    assert len(copies) >= len(prepared)
    assert facing_other_way(copies, prepared) <= facing_other_way(prepared, prepared) + 0.05
    # The recipe: no plain flips; flips only through the conditioned augmentation the network is told about.
    assert generator.config["hflip"] is False and generator.config["augment_flip"] is True
    assert generator.config["augment_p"] > 0
    # The report's classifier does not mirror them either.
    assert evaluation.classifier_settings(generator, "cpu").mirror is False


def test_symmetric_photos_keep_their_mirror_images(user, monkeypatch, settings):
    settings.SYNTHGEN_TRAINING_OVERRIDES = {}
    generator, training = trained_through_the_stages(user, monkeypatch, discs(n=40, size=32), "discs")
    assert generator.orientation["mirrors"] is True
    assert generator.config["hflip"] is True and generator.config["augment_flip"] is False
    assert evaluation.classifier_settings(generator, "cpu").mirror is True


def test_the_pages_and_the_api_say_which_way_the_photos_face(user, monkeypatch, client, api):
    generator, _ = trained_through_the_stages(user, monkeypatch, wedges(n=40, size=32), "wedges")
    client.force_login(user)
    page = client.get(f"/generators/{generator.pk}/").content.decode()
    assert 'id="orientation"' in page and "face one way" in page and "no mirror images are added" in page
    answer = api.get(f"/api/generators/{generator.pk}/").json()
    assert answer["orientation"]["mirrors"] is False and "face one way" in answer["orientation"]["summary"]
    review = client.get(f"/datasets/{generator.dataset_id}/").content.decode()
    assert 'id="orientation"' in review and "face one way" in review


def test_a_generator_trained_before_orientation_was_measured_says_nothing(user, api):
    generator = Generator.objects.create(owner=user, name="old", kind="ddim", resolution=32, channels=1, preset="quick")
    assert api.get(f"/api/generators/{generator.pk}/").json()["orientation"] is None


def test_the_dataset_is_measured_again_only_when_its_images_change(user, django_assert_max_num_queries):
    dataset, _ = dataset_services.create_dataset(owner=user, name="discs", files=uploads(discs(n=12, size=32), "d"))
    first = dataset_orientation(dataset)
    assert first["mirrors"] is True and first["images"] == dataset.images.count() >= 8
    with django_assert_max_num_queries(1):  # the signature only: nothing is read from storage again
        assert dataset_orientation(dataset) == first
    dataset_services.add_images(dataset=dataset, files=uploads(wedges(n=30, size=32), "w"))
    dataset.refresh_from_db()
    assert dataset_orientation(dataset)["images"] == dataset.images.count() > first["images"]
