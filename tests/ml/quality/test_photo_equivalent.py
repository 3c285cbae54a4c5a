"""The balance test's photo equivalent (issue #19): what a conditional generator's images are worth in real
photos of the short classes, on constructed labelled sets whose answer is known."""

import json

import torch
import torch.nn.functional as F

from apps.ml.quality.balance import _photo_words, balance_test, subsample
from apps.ml.quality.classifier import ClassifierSettings
from apps.ml.quality.usefulness import CREDIT_WORDS
from tests.ml.constructed import blobs
from tests.ml.quality.tiny import TINY, bars

# Enough training for the classifier to learn the patterns it has seen and not the ones it has not.
LEARNS = ClassifierSettings(steps=200, batch_size=32, width=12)


def patterns(k: int, seed: int, size: int = 16) -> torch.Tensor:
    """k coarse random 4 x 4 block patterns (the modes of a class)."""
    g = torch.Generator().manual_seed(seed)
    blocks = (torch.rand(k, 1, size // 4, size // 4, generator=g) > 0.5).float()
    return F.interpolate(blocks, size=(size, size), mode="nearest")


def photos(modes: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n noisy uint8 photos, each of one of the class's modes: a class with many modes needs many photos."""
    g = torch.Generator().manual_seed(seed)
    x = modes[torch.randint(0, len(modes), (n,), generator=g)] * 0.7 + 0.15
    x = x + 0.25 * torch.randn(x.shape, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


MODES = patterns(24, seed=0)
A, B = MODES[:12], MODES[12:]  # "b" is the short class: 8 photos of its 12 modes
REAL_TRAIN = [photos(A, 120, seed=1), photos(B, 8, seed=2)]
REAL_TEST = [photos(A, 80, seed=100), photos(B, 80, seed=101)]


def consistent(credit: dict) -> None:
    """The credit's words say what its interval says."""
    expected = "gain" if credit["low"] > 0 else "loss" if credit["high"] < 0 else "none"
    assert credit["verdict"] == expected and credit["words"] == CREDIT_WORDS[expected]


def test_generated_images_that_add_information_are_worth_real_photos():
    # New photos of the short class's modes: they show it modes its 8 photos miss.
    out = balance_test(
        real_train=REAL_TRAIN,
        real_test=REAL_TEST,
        generated=[photos(A, 200, 5), photos(B, 200, 6)],
        class_names=["a", "b"],
        settings=LEARNS,
    )
    pe = out["photo_equivalent"]
    consistent(out["credit"])
    assert out["credit"]["verdict"] == "gain"
    assert pe["verdict"] == "gain" and pe["photos"] > 0 and 0 < pe["low"] <= pe["photos"], pe
    assert pe["words"].startswith(
        f"the generated images are worth about {pe['photos']:.0f} more real photos of the short classes (95 % interval"
    ), pe["words"]
    # The real arms: the short class cut to 25 % and 50 % of its photos (two more trainings a seed), the largest whole.
    assert pe["sizes"] == {"real_aug_25": 2, "real_aug_50": 4, "real_aug": 8}
    assert out["counts"]["real_aug_25"] == {"a": 120, "b": 2} and out["counts"]["real_aug_50"] == {"a": 120, "b": 4}
    assert len(out["real_aug_25"]["per_seed"]) == 3
    json.dumps(out)


def test_generated_images_of_the_wrong_class_are_worth_no_photos():
    # "b" images that are photos of "a": they raise b's recall by calling a's photos b, and teach nothing.
    out = balance_test(
        real_train=REAL_TRAIN,
        real_test=REAL_TEST,
        generated=[photos(A, 200, 5), photos(A, 200, 7)],
        class_names=["a", "b"],
        seeds=(0, 1),
        settings=LEARNS,
    )
    pe = out["photo_equivalent"]
    consistent(out["credit"])
    assert out["credit"]["verdict"] != "gain"
    assert pe["verdict"] == "none" and pe["words"].startswith("no "), pe
    assert "worth about" not in pe["words"]


def test_no_gain_is_said_whenever_the_credit_interval_holds_zero():
    # The learning curve alone reads a gain, the credit's interval holds 0: the words must not say "worth about".
    pe = {
        "photos": 30.0,
        "low": 5.0,
        "high": 80.0,
        "verdict": "none",
        "curve_verdict": "gain",
        "detectable": {"accuracy": 0.05, "photos": 20.0},
    }
    words = _photo_words(pe, {"verdict": "none"})
    assert (
        words.startswith("no measurable gain") and "holds 0" in words and "could have seen a gain of about 20" in words
    )
    assert _photo_words(pe | {"photos": 0.0, "low": 0.0, "curve_verdict": "none"}, {"verdict": "loss"}).startswith(
        "no gain"
    )
    words = _photo_words(pe | {"photos": 0.0, "low": 0.0, "high": 3.0, "curve_verdict": "none"}, {"verdict": "none"})
    assert words.startswith("no gain") and "about 20 more real photos" in words


def test_a_dataset_too_small_for_a_photo_count_says_so():
    real_train = [blobs(30, seed=1), bars(8, seed=3)]
    # 6 unseen photos of the short class: too few for the interval to mean something; no extra trainings.
    few_test = balance_test(
        real_train=real_train,
        real_test=[blobs(20, seed=2), bars(6, seed=4)],
        generated=[blobs(40, seed=5), bars(40, seed=6)],
        class_names=["blob", "bar"],
        seeds=(0,),
        settings=TINY,
    )
    pe = few_test["photo_equivalent"]
    assert pe["photos"] is None and pe["low"] is None and pe["verdict"] == "not measured"
    assert "too few unseen photos of the short classes" in pe["words"] and "6, under 10" in pe["words"]
    assert "real_aug_25" not in few_test["counts"] and "real_aug_25" not in few_test
    # 5 photos of the short class: its 25 % would be 1 photo.
    few_photos = balance_test(
        real_train=[blobs(30, seed=1), bars(5, seed=3)],
        real_test=[blobs(20, seed=2), bars(20, seed=4)],
        generated=[blobs(40, seed=5), bars(40, seed=6)],
        class_names=["blob", "bar"],
        seeds=(0,),
        settings=TINY,
    )
    assert few_photos["photo_equivalent"]["photos"] is None
    assert "25 % of the photos of bar is under 2 photos" in few_photos["photo_equivalent"]["words"]
    # No held-out photos at all (a set under 40 photos): the reason, not a number.
    none = balance_test(
        real_train=real_train,
        real_test=[blobs(20, seed=2), bars(0, seed=4)],
        generated=real_train,
        class_names=["blob", "bar"],
        seeds=(0,),
        settings=TINY,
    )
    assert none["photo_equivalent"]["photos"] is None and "held-out photos" in none["photo_equivalent"]["words"]


def test_the_subsamples_are_nested_and_differ_by_seed():
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1)
    quarter, half = (set(subsample(images, f, seed=3, salt=1).flatten().tolist()) for f in (0.25, 0.5))
    assert len(quarter) == 10 and len(half) == 20 and quarter <= half
    assert set(subsample(images, 0.25, seed=4, salt=1).flatten().tolist()) != quarter


def test_the_learning_curve_takes_the_callers_bootstrap_draws():
    import numpy as np

    from apps.ml.quality.learning_curve import photo_equivalent

    sizes, arms, mixed = [30, 60, 120], [[0.60, 0.62, 0.61], [0.65, 0.66, 0.64], [0.70, 0.71, 0.69]], [0.76, 0.75, 0.77]
    picks = np.random.default_rng(0).integers(0, 3, size=(500, 3))
    boot = (np.asarray(arms)[:, picks].mean(axis=2), np.asarray(mixed)[picks].mean(axis=1))
    assert photo_equivalent(sizes, arms, mixed, draws=500) == photo_equivalent(sizes, arms, mixed, resampled=boot)


def test_a_short_class_without_unseen_photos_gets_no_claim():
    heads = [blobs(60, seed=1), photos(A, 60, seed=7)]
    tests = [blobs(20, seed=2), photos(A, 20, seed=8)]
    # The one short class kept no photo back: the images are for it, so nothing is measured at all.
    alone = balance_test(
        real_train=[*heads, bars(8, seed=3)],
        real_test=[*tests, bars(0, seed=4)],
        generated=[blobs(40, seed=5), photos(A, 40, seed=9), bars(40, seed=6)],
        class_names=["blob", "pattern", "bar"],
        seeds=(0,),
        settings=TINY,
    )
    assert alone["credit"]["value"] is None and alone["mixed_aug"]["value"] is None
    assert "bar, the classes the generated images are for, kept no unseen photos" in alone["credit"]["reason"]
    assert alone["unscored"] == ["bar"] and alone["photo_equivalent"]["photos"] is None
    # Two short classes, one of them unscored: measured on the others, and the words say what is left out.
    some = balance_test(
        real_train=[*heads, bars(8, seed=3), photos(B, 8, seed=2)],
        real_test=[*tests, bars(0, seed=4), photos(B, 20, seed=101)],
        generated=[blobs(40, seed=5), photos(A, 40, seed=9), bars(40, seed=6), photos(B, 40, seed=5)],
        class_names=["blob", "pattern", "bar", "b"],
        seeds=(0,),
        settings=TINY,
    )
    assert some["credit"]["value"] is not None and some["unscored"] == ["bar"] and some["classes_scored"] == 3
    assert "measured without bar, which kept no unseen photos: nothing is claimed for them" in some["credit"]["words"]


def test_the_mixed_arm_trains_with_the_recommended_weight():
    # Generated images showing the short class's modes its 8 photos miss: weighing them a tenth gets less of it.
    useful = [photos(A, 200, 5), photos(B, 200, 6)]
    full, light = (
        balance_test(
            real_train=REAL_TRAIN,
            real_test=REAL_TEST,
            generated=useful,
            class_names=["a", "b"],
            seeds=(0,),
            settings=LEARNS,
            generated_weight=w,
        )
        for w in (1.0, 0.1)
    )
    assert full["real_aug"]["value"] == light["real_aug"]["value"]  # the same real arm
    assert full["mixed_aug"]["value"] > light["mixed_aug"]["value"] + 0.03
    assert light["generated_weight"] == 0.1 and full["generated_weight"] == 1.0
    # The recipe's ratio: the short class's 8 photos get at most 4 generated images each, not 112 to fill it up.
    assert full["counts"]["mixed_aug"] == {"a": 121, "b": 8 + 4 * 8}


def test_no_photo_count_still_says_the_smallest_gain_the_test_could_have_seen():
    """A flat learning curve gives no photo count; the words still say what the test could have seen (#19)."""
    flat = {
        "verdict": "none",
        "photos": None,
        "low": 0.0,
        "high": None,
        "detectable": {"accuracy": 0.0258, "photos": None},
    }
    words = _photo_words(flat, {"verdict": "none"})
    assert "no learning curve" in words and "could have seen a gain of about 2.6 points of accuracy" in words
