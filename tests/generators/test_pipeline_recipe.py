"""The train stage chooses the recipe from the number of distinct photos, not photos plus augmented copies."""

import pytest
import torch

from apps.core import storage
from apps.generators.models import Generator, TrainingRun
from apps.generators.stages import data, training
from apps.ml.engine import registry
from apps.ml.engine.checkpoint import save_tensors_atomic
from tests.factories import NoTraining

pytestmark = pytest.mark.django_db


def config_chosen(user, monkeypatch, *, augment: bool, photos: int = 150) -> tuple[dict, int]:
    """Run prepare's output through the augment and train stages; the config train chose, and the images it saw."""
    generator = Generator.objects.create(
        owner=user, name="sandals", kind="ddim", resolution=32, channels=1, preset="quick", augment=augment
    )
    run = TrainingRun.objects.create(
        generator=generator, status=TrainingRun.Status.RUNNING, stage="augment", image_count=photos
    )
    g = torch.Generator().manual_seed(0)
    with storage.scratch("prepared") as work:
        save_tensors_atomic(
            {"images": torch.randint(0, 256, (photos, 1, 32, 32), dtype=torch.uint8, generator=g)},
            work / storage.RUN_PREPARED,
        )
        storage.publish_file(work / storage.RUN_PREPARED, storage.run_file(run.pk, storage.RUN_PREPARED))
    with storage.scratch("augment") as work:
        data._augment(run, work)
    monkeypatch.setattr(training.registry, "get", lambda kind: NoTraining)
    with storage.scratch("train") as work:
        training._train(TrainingRun.objects.get(pk=run.pk), work)
    return Generator.objects.get(pk=generator.pk).config, NoTraining.trained_on[-1]


def test_150_augmented_photos_get_the_recipe_of_150_photos(user, monkeypatch, settings):
    settings.SYNTHGEN_TRAINING_OVERRIDES = {}
    plain, plain_seen = config_chosen(user, monkeypatch, augment=False)
    augmented, augmented_seen = config_chosen(user, monkeypatch, augment=True)
    assert plain_seen == 150 and augmented_seen > 900  # the model still trains on the augmented copies
    assert augmented == plain
    assert plain["image_count"] == 150
    # Sensitive: the augmented count would have chosen another recipe (more steps, less dropout).
    as_if_counted = registry.get("ddim").default_config(
        resolution=32, channels=1, preset="quick", image_count=augmented_seen, device="cpu"
    )
    assert (as_if_counted["total_steps"], as_if_counted["dropout"]) != (plain["total_steps"], plain["dropout"])
