"""credit(): the accuracy one arm adds over another, where one arm is truly better or truly worse.

Each test fails if the arguments are swapped, in credit() itself or where the usefulness test calls it."""

import pytest
import torch

from apps.ml.quality.usefulness import credit, usefulness_test
from tests.ml.constructed import blobs, shapes
from tests.ml.quality.tiny import TINY, bars


def hits(share: float, seeds: int = 3, classes: int = 2, images: int = 40) -> list[list[torch.Tensor]]:
    """Per seed, per class: the first ``share`` of the test images right, the rest wrong (different per seed)."""
    out = []
    for seed in range(seeds):
        per_class = []
        for c in range(classes):
            right = torch.arange(images) < round(share * images)
            per_class.append(right[torch.randperm(images, generator=torch.Generator().manual_seed(seed * 10 + c))])
        out.append(per_class)
    return out


def test_a_truly_better_arm_gets_a_gain_and_a_truly_worse_one_a_loss():
    better, worse = hits(0.9), hits(0.6)
    gain = credit(better, worse, [0.3, 0.3, 0.3])
    assert gain["verdict"] == "gain" and gain["words"] == "adds accuracy beyond augmentation"
    assert 0 < gain["low"] <= 0.3 <= gain["high"] < 0.45 and gain["value"] == pytest.approx(0.3)
    loss = credit(worse, better, [-0.3, -0.3, -0.3])
    assert loss["verdict"] == "loss" and loss["words"] == "hurts"
    assert -0.45 < loss["low"] <= -0.3 <= loss["high"] < 0
    same = credit(better, hits(0.9), [0.0, 0.0, 0.0])
    assert same["verdict"] == "none" and same["low"] <= 0 <= same["high"]


@pytest.fixture(scope="module")
def two_kinds():
    """The class shows two kinds of picture (soft blobs and bars); its training photos show only the blobs.
    The other class: hollow rectangles."""
    return dict(
        real_train=blobs(20, seed=1),
        real_test=torch.cat([blobs(15, seed=2), bars(15, seed=3)]),
        negatives_train=[shapes(30, seed=4)],
        negatives_test=[shapes(30, seed=5)],
        seeds=(0, 1, 2),
        settings=TINY,
    )


def test_generated_images_of_the_missing_kind_are_credited_with_a_gain(two_kinds):
    out = usefulness_test(synthetic=bars(20, seed=6), **two_kinds)
    assert out["mixed_aug"]["value"] > out["real_aug"]["value"] + 0.1
    assert out["credit"]["verdict"] == "gain" and out["credit"]["low"] > 0
    assert out["credit"]["value"] == pytest.approx(out["mixed_aug"]["value"] - out["real_aug"]["value"], abs=1e-6)


def test_generated_images_of_the_other_class_are_credited_with_a_loss():
    # The class: blobs, fully shown by its photos. The other class: hollow rectangles and a few bars. The
    # "generated" images are bars: they teach the classifier that bars are this class, and the other
    # class's bars at test time are then taken for it.
    out = usefulness_test(
        real_train=blobs(20, seed=1),
        real_test=blobs(30, seed=2),
        negatives_train=[torch.cat([shapes(30, seed=4), bars(6, seed=8)])],
        negatives_test=[torch.cat([shapes(15, seed=5), bars(15, seed=9)])],
        synthetic=bars(20, seed=7),
        seeds=(0, 1, 2),
        settings=TINY,
    )
    assert out["mixed_aug"]["value"] < out["real_aug"]["value"] - 0.1
    assert out["credit"]["verdict"] == "loss" and out["credit"]["high"] < 0
    assert out["credit"]["words"] == "hurts"
