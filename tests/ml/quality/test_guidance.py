"""Choosing the guidance scale on a validation split of the training photos (#18), by what its images do to a
classifier of the classes (#19)."""

from __future__ import annotations

import pytest
import torch

from apps.ml.quality.classifier import ClassifierSettings
from apps.ml.quality.guidance import CRITERION, MIN_CLASS_PHOTOS, choose_guidance, validation_split
from tests.ml.constructed import discs, wedges

FAST = ClassifierSettings(steps=60, width=8)


class KnownBest:
    """A constructed generator: at guidance 3 it draws fresh photos of the asked class; at any other scale
    it draws the other class's photos (or, at 8, one photo over and over). The right answer is 3."""

    def __init__(self, pools: list[torch.Tensor]):
        self.pools = pools
        self.asked: list[float] = []

    def sample(self, n, *, seed, steps=None, labels, guidance):
        self.asked.append(guidance)
        gen = torch.Generator().manual_seed(seed)
        if guidance == 8.0:
            return self.pools[labels][:1].repeat(n, 1, 1, 1)
        pool = self.pools[labels if guidance == 3.0 else 1 - labels]
        return pool[torch.randint(0, len(pool), (n,), generator=gen)]


def test_the_scale_that_makes_images_of_their_class_wins():
    photos = torch.cat([wedges(n=24, size=32), discs(n=24, size=32)])
    labels = torch.tensor([0] * 24 + [1] * 24)
    fresh = [wedges(n=60, size=32, seed=9), discs(n=60, size=32, seed=9)]
    model = KnownBest(fresh)
    choice = choose_guidance(model, photos, labels, per_class=24, classifier_settings=FAST)
    assert choice["guidance"] == 3.0, choice["scores"]
    assert set(model.asked) == {1.0, 2.0, 3.0, 5.0, 8.0}
    assert choice["against"] == "a validation split of the training photos"


def test_the_validation_split_keeps_photos_of_every_class_on_both_sides():
    photos = torch.arange(20).view(20, 1, 1, 1).to(torch.uint8)
    labels = torch.tensor([0] * 12 + [1] * 8)
    fit, fit_labels, val, val_labels = validation_split(photos, labels, seed=0)
    assert sorted(torch.cat([fit, val]).flatten().tolist()) == list(range(20))  # each photo once
    for c in (0, 1):
        assert (fit_labels == c).sum() >= 2 and (val_labels == c).sum() >= 2
    with pytest.raises(ValueError, match="needs"):
        validation_split(photos[: MIN_CLASS_PHOTOS + 2], torch.tensor([0] * (MIN_CLASS_PHOTOS - 1) + [1] * 3))


def test_images_of_the_wrong_class_score_below_the_photos_alone():
    """The score is what the images do to a classifier on the validation photos: the other class's pictures
    under this class's label lower it below the fitting photos alone; the right class's do not."""
    photos = torch.cat([wedges(n=24, size=32), discs(n=24, size=32)])
    labels = torch.tensor([0] * 24 + [1] * 24)
    model = KnownBest([wedges(n=60, size=32, seed=9), discs(n=60, size=32, seed=9)])
    choice = choose_guidance(model, photos, labels, per_class=24, candidates=(1.0, 3.0), classifier_settings=FAST)
    assert choice["scores"]["1"] < choice["photos_only"]["score"] <= choice["scores"]["3"] + 0.05, choice
    assert choice["criterion"] == CRITERION and choice["seeds"] == [0, 1]


class SameAtEveryScale:
    """A constructed generator whose images do not depend on the guidance scale."""

    def __init__(self, pools: list[torch.Tensor]):
        self.pools = pools

    def sample(self, n, *, seed, steps=None, labels, guidance):
        pool = self.pools[labels]
        return pool[torch.randint(0, len(pool), (n,), generator=torch.Generator().manual_seed(seed))]


def test_a_tie_goes_to_the_lower_scale():
    photos = torch.cat([wedges(n=16, size=32), discs(n=16, size=32)])
    labels = torch.tensor([0] * 16 + [1] * 16)
    model = SameAtEveryScale([wedges(n=40, size=32, seed=5), discs(n=40, size=32, seed=5)])
    choice = choose_guidance(model, photos, labels, per_class=16, candidates=(5.0, 2.0), classifier_settings=FAST)
    assert choice["scores"]["2"] == choice["scores"]["5"] and choice["guidance"] == 2.0, choice
