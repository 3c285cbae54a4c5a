"""The evaluate stage chooses a conditional generator's guidance scale on its training photos only (#18):
the held-out photos are the report's test set and never reach the choice."""

import json

import pytest
import torch

from apps.generators import evaluation
from apps.generators.models import Generator
from apps.ml.ddim import DDIM
from tests.ml.constructed import discs, wedges
from tests.ml.ddim.tiny import perturb, tiny_config

pytestmark = pytest.mark.django_db


def test_the_guidance_scale_is_chosen_without_the_held_out_photos(user, tmp_path, monkeypatch):
    train = torch.cat([wedges(n=12, size=16, seed=1), discs(n=12, size=16, seed=1)])
    train_labels = torch.tensor([0] * 12 + [1] * 12)
    heldout = torch.cat([wedges(n=8, size=16, seed=2), discs(n=8, size=16, seed=2)])
    held_labels = torch.tensor([0] * 8 + [1] * 8)
    model = DDIM(tiny_config(resolution=16, num_classes=2, classes=["wedge", "disc"], guidance_scale=1.0), device="cpu")
    perturb(model)
    model.save(tmp_path / "model")
    generator = Generator.objects.create(
        owner=user,
        name="shapes",
        kind="ddim",
        resolution=16,
        channels=1,
        classes=[{"name": "wedge", "image_count": 20}, {"name": "disc", "image_count": 20}],
        orientation={"mirrors": False},
    )
    seen = []
    real_choice = evaluation.choose_guidance

    def spy(model, photos, labels, **kwargs):
        seen.append(photos.clone())
        return real_choice(model, photos, labels, candidates=(1.0, 4.0), **kwargs)

    monkeypatch.setattr(evaluation, "choose_guidance", spy)
    report = evaluation.evaluate_by_class(
        generator=generator,
        model_dir=tmp_path / "model",
        train=train,
        heldout=heldout,
        copies_grid=tmp_path / "copies.png",
        labels=(train_labels, held_labels, None),
    )
    (photos,) = seen
    held = {bytes(image.flatten().tolist()) for image in heldout}
    assert not any(bytes(image.flatten().tolist()) in held for image in photos)  # no test photo was used
    assert len(photos) == len(train)
    chosen = report["guidance"]["guidance"]
    assert chosen in (1.0, 4.0) and set(report["guidance"]["scores"]) == {"1", "4"}
    # The choice is in the model's config: the report's images and every generation use it.
    assert json.loads((tmp_path / "model" / "config.json").read_text())["guidance_scale"] == chosen


def test_too_few_photos_keep_the_default_and_say_why(user, tmp_path):
    model = DDIM(tiny_config(resolution=16, num_classes=2, classes=["wedge", "disc"]), device="cpu")
    train = torch.cat([wedges(n=3, size=16), discs(n=12, size=16)])
    choice = evaluation.chosen_guidance(
        model, tmp_path, train, torch.tensor([0] * 3 + [1] * 12), 3, evaluation.ClassifierSettings(steps=10)
    )
    assert choice["guidance"] == model.config.guidance_scale and "kept" in choice["reason"]
