"""The class filter: a classifier of the generator's classes drops generated images of the wrong class."""

import json

import pytest
import torch

from apps.ml.quality import class_filter, filtering
from apps.ml.quality.classifier import ClassifierSettings
from tests.ml.constructed import blobs, shapes

TINY = ClassifierSettings(steps=60, batch_size=32, width=8)


@pytest.fixture(scope="module")
def trained():
    """Class 0: soft blobs; class 1: sharp hollow rectangles. 30 training and 12 held-out photos each."""
    train = torch.cat([blobs(30, seed=1), shapes(30, seed=2)])
    held = torch.cat([blobs(12, seed=3), shapes(12, seed=4)])
    labels = lambda n: torch.cat([torch.zeros(n), torch.ones(n)]).long()  # noqa: E731
    return class_filter.train_class_filter(train, labels(30), held, labels(12), classes=2, settings=TINY)


def test_images_of_the_wrong_class_are_dropped_and_the_right_ones_kept(trained):
    # "generated" blobs: 8 right, 4 of the other class; and the same the other way round
    as_blob = torch.cat([blobs(8, seed=10), shapes(4, seed=11)])
    keep, scores = trained.check(as_blob, 0)
    assert keep.tolist() == [True] * 8 + [False] * 4
    assert scores[:8].min() > 0.5 > scores[8:].max()
    as_shape = torch.cat([shapes(8, seed=12), blobs(4, seed=13)])
    keep, _ = trained.check(as_shape, torch.ones(12, dtype=torch.long))
    assert keep.tolist() == [True] * 8 + [False] * 4
    for calibration in trained.calibration:
        assert calibration["source"] == "heldout" and calibration["heldout"] == 12
    assert all(0 < t <= class_filter.CEILING for t in trained.thresholds)


def test_the_filter_replaces_dropped_images_and_scores_every_kept_one(trained):
    def sample(n, seed):  # every other image is of the wrong class
        right, wrong = blobs(n, seed=seed % 1000), shapes(n, seed=seed % 1000 + 1)
        return torch.stack([right[i] if i % 2 == 0 else wrong[i] for i in range(n)])

    reference = filtering.build_reference(blobs(30, seed=1), blobs(12, seed=3))
    out = filtering.generate_filtered(
        sample, 10, reference, seed=3, class_check=lambda images: trained.check(images, 0)
    )
    assert len(out.images) == 10 and out.shortfall == 0
    assert out.dropped["class"] >= 5 and out.generated >= 15
    kept_again, scores = trained.check(out.images, 0)
    assert kept_again.all()
    assert [s["score"] for s in out.scores] == pytest.approx(scores.tolist(), abs=1e-6)
    assert all(s["dropped"] is None for s in out.scores)
    # Filtering off: nothing is dropped, but every image still gets its score.
    off = filtering.generate_filtered(sample, 6, None, seed=3, class_check=lambda images: trained.check(images, 0))
    assert len(off.images) == 6 and off.dropped["class"] == 0
    assert [s["score"] < 0.5 for s in off.scores] == [False, True] * 3


def test_the_stored_filter_scores_like_the_trained_one(trained):
    images = torch.cat([blobs(5, seed=20), shapes(5, seed=21)])
    again = class_filter.ClassFilter.from_bytes(trained.to_bytes())
    assert again.thresholds == trained.thresholds and again.calibration == trained.calibration
    assert torch.allclose(again.scores(images, 0), trained.scores(images, 0))
    json.dumps(again.describe(["blob", "shape"]))
    assert again.describe(["blob", "shape"])["classes"]["shape"]["source"] == "heldout"
    other_format = class_filter.ClassFilter(
        model=trained.model, thresholds=trained.thresholds, calibration=trained.calibration
    )
    old = class_filter.FORMAT
    try:
        class_filter.FORMAT = old + 1
        data = other_format.to_bytes()
    finally:
        class_filter.FORMAT = old
    assert class_filter.ClassFilter.from_bytes(data) is None  # another recipe: trained again


def test_thresholds_per_class_pooled_or_chance_when_there_are_too_few_heldout_photos():
    many = torch.linspace(0, 1, 101)  # 5th percentile 0.05
    high = torch.full((20,), 0.99)
    few = torch.tensor([0.001, 0.002])
    thresholds, calibration = class_filter.calibrate([many, high, few])
    assert thresholds[0] == pytest.approx(0.05)
    assert thresholds[1] == class_filter.CEILING and calibration[1]["quantile"] == pytest.approx(0.99)
    pooled = torch.quantile(torch.cat([many, high, few]).double(), 0.05).item()
    assert calibration[2] == {"source": "pooled", "heldout": 2, "quantile": pytest.approx(pooled, abs=1e-6)}
    assert [c["source"] for c in calibration] == ["heldout", "heldout", "pooled"]
    thresholds, calibration = class_filter.calibrate([few, torch.empty(0), torch.tensor([0.9])])
    assert thresholds == pytest.approx([1 / 3] * 3) and {c["source"] for c in calibration} == {"chance"}
