"""Usefulness test and the quality report on constructed cases where the verdict is known."""

import json

import pytest
import torch
import torch.nn.functional as F

from apps.ml.quality import report as quality
from apps.ml.quality.balance import balance_test
from apps.ml.quality.classifier import ClassifierSettings, train_classifier
from apps.ml.quality.images import match_format, split
from apps.ml.quality.metrics import blur
from apps.ml.quality.usefulness import usefulness_test
from tests.ml.constructed import blobs, noise, shapes
from tests.ml.quality.tiny import TINY, bars


def test_usefulness_balanced_accuracy_on_a_separable_toy_problem():
    args = dict(
        real_train=blobs(30, seed=1),
        real_test=blobs(20, seed=2),
        negatives_train=[bars(30, seed=3)],
        negatives_test=[bars(20, seed=4)],
        seeds=(0, 1),
        settings=TINY,
    )
    good = usefulness_test(synthetic=blobs(30, seed=5), extra_real=blobs(30, seed=6), **args)
    for arm in ("real", "synthetic", "mixed", "real_aug", "mixed_aug", "oracle"):
        assert good[arm]["value"] >= 0.95, arm
    assert good["gqi"]["value"] == pytest.approx(100, abs=10)
    # images as good as real ones, on a problem real images already solve: no credit, and the words say so
    assert good["credit"]["low"] <= 0 <= good["credit"]["high"]
    assert good["credit"]["words"] == "no measurable gain beyond augmentation"
    assert len(good["real"]["per_seed"]) == 2 and good["classes"] == 2
    # "synthetic" images of the wrong class teach nothing about blobs: chance level on the bars, and
    # at best every blob put in one class -> at most (1 + 0.5) / 2
    args["seeds"] = (0,)
    wrong = usefulness_test(synthetic=bars(30, seed=7), **args)
    assert wrong["synthetic"]["value"] <= 0.8 and wrong["gqi"]["value"] <= 60  # chance-corrected: 0.75 -> 50
    assert wrong["oracle"] == {"value": None, "reason": "no further real images of this class were available"}
    json.dumps(good)


def test_balance_test_gives_every_class_generated_images_and_scores_the_short_ones():
    real_train = [blobs(30, seed=1), bars(6, seed=3)]  # bars is the short class
    real_test = [blobs(20, seed=2), bars(20, seed=4)]
    good = balance_test(
        real_train=real_train,
        real_test=real_test,
        generated=[blobs(40, seed=5), bars(40, seed=6)],
        class_names=["blob", "bar"],
        seeds=(0, 1),
        settings=TINY,
    )
    assert good["counts"]["mixed_aug"] == {"blob": 31, "bar": 30}  # filled to the largest class, one extra at least
    assert good["counts"]["synthetic"] == {"blob": 40, "bar": 40}
    for arm in ("real_aug", "mixed_aug", "synthetic"):
        assert good[arm]["value"] >= 0.95, arm
    assert good["credit"]["low"] <= 0 <= good["credit"]["high"]  # a solved problem: nothing to gain
    assert set(good["short_classes"]) == {"bar"} and good["short_classes"]["bar"]["synthetic"] >= 0.9
    # Generated images of the wrong kind: generated-only training does no better than guessing one class.
    wrong = balance_test(
        real_train=real_train,
        real_test=real_test,
        generated=[bars(40, seed=7), blobs(40, seed=8)],
        class_names=["blob", "bar"],
        seeds=(0,),
        settings=TINY,
    )
    assert wrong["synthetic"]["value"] <= 0.6
    json.dumps(good)
    one = balance_test(
        real_train=real_train,
        real_test=[real_test[0], bars(0, seed=1)],
        generated=real_train,
        class_names=["blob", "bar"],
        seeds=(0,),
        settings=TINY,
    )
    assert one["credit"]["value"] is None and one["classes_scored"] == 1


def test_classifier_is_deterministic_for_a_seed():
    classes = [blobs(20, seed=1), bars(20, seed=2)]
    a, b = (train_classifier(classes, seed=3, settings=TINY) for _ in range(2))
    c = train_classifier(classes, seed=4, settings=TINY)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_usefulness_classifier_draws_classes_uniformly_or_at_their_natural_frequencies(monkeypatch):
    from apps.ml.quality import classifier

    drawn = []
    cross_entropy = classifier.F.cross_entropy

    def spy(logits, labels, *args, **kwargs):
        drawn.append(labels.clone())
        return cross_entropy(logits, labels, *args, **kwargs)

    monkeypatch.setattr(classifier.F, "cross_entropy", spy)
    classes = [blobs(10, seed=1), bars(90, seed=2)]  # the first class is 10 % of the images
    assert ClassifierSettings().class_balanced  # the default: oversample the small classes
    share = {}
    for balanced in (True, False):
        drawn.clear()
        train_classifier(
            classes, seed=0, settings=ClassifierSettings(steps=20, batch_size=32, width=4, class_balanced=balanced)
        )
        share[balanced] = (torch.cat(drawn) == 0).float().mean().item()
    assert 0.4 < share[True] < 0.6 and share[False] < 0.2
    a, b = (
        train_classifier(
            classes, seed=3, settings=ClassifierSettings(steps=5, batch_size=8, width=4, class_balanced=False)
        )
        for _ in range(2)
    )
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_usefulness_without_other_classes_is_null_with_reason():
    result = usefulness_test(
        real_train=blobs(10, seed=1),
        real_test=blobs(5, seed=2),
        synthetic=blobs(10, seed=3),
        negatives_train=[],
        negatives_test=[],
        settings=TINY,
    )
    assert result["gqi"]["value"] is None and "other classes" in result["gqi"]["reason"]


def test_split_and_match_format():
    images = blobs(10, seed=1)
    train, held = split(images, holdout=0.3, seed=0)
    assert len(train) == 7 and len(held) == 3
    assert sorted(torch.cat([train, held]).flatten(1).sum(1).tolist()) == sorted(images.flatten(1).sum(1).tolist())
    rgb = match_format(images, channels=3, size=8)
    assert rgb.shape == (10, 3, 8, 8) and rgb.dtype == torch.uint8
    assert match_format(rgb, channels=1, size=8).shape == (10, 1, 8, 8)


@pytest.fixture(scope="module")
def real():
    return {"train": blobs(60, seed=1), "heldout": blobs(30, seed=2)}


def report(real, generated, **kw):
    out = quality.quality_report(
        generated=generated,
        train=real["train"],
        heldout=real["heldout"],
        negatives=[bars(60, seed=5)],
        seeds=(0,),
        settings=TINY,
        measure_usefulness=False,
        **kw,
    )
    json.dumps(out)
    return out


def test_report_varied_and_new(real):
    out = report(real, blobs(90, seed=3))
    assert out["verdict"] == "varied and new", out["explanation"]
    assert out["advice"] == ""
    assert 0.8 < out["diversity"]["value"] < 1.25
    assert out["copy_share"]["value"] <= 0.1 and out["noise_share"]["value"] == 0
    for key in ("swd", "fid", "kid", "precision", "recall", "density", "coverage"):
        assert out[key]["value"] is not None and out[key]["reference"] is not None, key
    assert out["precision"]["images"] == 30 and out["swd"]["images"] == 30  # size-matched to the held-out side
    assert out["usefulness"]["gqi"] == {"value": None, "reason": "the usefulness test was turned off"}


def test_real_heldout_photos_scored_as_generated_get_the_positive_verdict_and_no_credit():
    train, heldout, fresh = blobs(60, seed=1), blobs(30, seed=2), blobs(60, seed=3)
    out = quality.quality_report(
        generated=fresh,
        train=train,
        heldout=heldout,
        negatives=[bars(60, seed=5)],
        negatives_heldout=[bars(30, seed=6)],
        seeds=(0, 1),
        settings=TINY,
    )
    assert out["verdict"] == "varied and new", out["explanation"]
    assert abs(out["memorisation"]["value"]) < 3
    credit = out["usefulness"]["credit"]
    assert credit["low"] <= 0 <= credit["high"] and abs(credit["value"]) < 0.05
    assert credit["words"] == "no measurable gain beyond augmentation"


def test_report_identical_set_scores_near_zero_distance(real):
    out = report(real, real["heldout"].clone())  # the fresh photos themselves: exactly the reference
    assert out["swd"]["value"] == pytest.approx(out["swd"]["reference"], rel=0.05)  # other patch draws
    assert out["fid"]["value"] == pytest.approx(out["fid"]["reference"])
    assert out["precision"]["value"] == out["coverage"]["value"] == 1.0


def test_report_repeats_itself(real):
    one = real["heldout"][0]  # a realistic picture, made over and over, a pixel to either side
    shifts = torch.randint(-1, 2, (40, 2), generator=torch.Generator().manual_seed(0)).tolist()
    collapsed = torch.stack([torch.roll(one, shifts=(dy, dx), dims=(-2, -1)) for dy, dx in shifts])
    out = report(real, collapsed)
    assert out["verdict"] == "repeats itself", out["explanation"]
    assert out["coverage"]["value"] < quality.COVERAGE_ALARM * out["coverage"]["reference"]
    assert out["precision"]["value"] >= quality.REALISTIC * out["precision"]["reference"]
    assert out["diversity"]["value"] < 0.5
    assert out["swd"]["value"] > out["swd"]["reference"]


def test_report_copies_your_photos_also_mirrored(real):
    order = torch.randperm(60, generator=torch.Generator().manual_seed(0))[:30]
    for copies in (real["train"][order], real["train"][order].flip(-1)):
        out = report(real, copies)
        assert out["verdict"] == "copies your photos", out["explanation"]
        assert out["copy_share"]["value"] == 1.0
        assert out["memorisation"]["value"] < -4
        assert out["delivered"]["count"] == 0 and out["filter"]["dropped"]["copy"] == 30
        worst = out["worst_copies"][0]
        assert worst["distance"] == 0.0 and worst["is_copy"]
        assert torch.equal(copies[worst["generated"]], real["train"][worst["train"]].flip(-1)) or torch.equal(
            copies[worst["generated"]], real["train"][worst["train"]]
        )


def test_report_mostly_noise(real):
    out = report(real, noise(30, seed=5))
    assert out["verdict"] == "mostly noise", out["explanation"]
    assert out["noise_share"]["value"] == 1.0 and out["delivered"]["count"] == 0
    assert out["delivered"]["diversity"]["value"] is None and out["delivered"]["diversity"]["reason"]


def _blurred(images: torch.Tensor, times: int) -> torch.Tensor:
    x = images.float() / 255
    for _ in range(times):
        x = blur(x)
    return (x * 255).round().to(torch.uint8)


def _smooth_noise(n: int, seed: int) -> torch.Tensor:
    coarse = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    return (F.interpolate(coarse, size=16, mode="bilinear") * 255).round().to(torch.uint8)


@pytest.mark.parametrize(
    "make",
    [lambda: _blurred(shapes(60, seed=4), 4), lambda: blobs(60, seed=4), lambda: _smooth_noise(60, seed=4)],
    ids=["blurred shapes", "blobs", "smooth noise"],
)
def test_unrealistic_images_are_not_realistic_yet_and_never_green(make):
    """Photos of sharp-edged shapes; a generator that makes soft blobs (the 64-px emoji case) or smooth noise."""
    sharp = {"train": shapes(60, seed=1), "heldout": shapes(30, seed=2)}
    out = quality.quality_report(
        generated=make(),
        train=sharp["train"],
        heldout=sharp["heldout"],
        negatives=[bars(60, seed=5)],
        seeds=(0,),
        settings=TINY,
        measure_usefulness=False,
    )
    assert out["verdict"] == "not realistic yet", out["explanation"]
    assert out["precision"]["value"] < quality.REALISM_ALARM * out["precision"]["reference"]
    assert out["noise_share"]["value"] < quality.NOISE_ALARM  # the noise check alone would have passed them
    assert "Train longer" in out["advice"]


def test_report_with_usefulness_and_without_heldout(real):
    generated = torch.cat([blobs(50, seed=3), noise(5, seed=4)])
    out = quality.quality_report(
        generated=generated,
        train=real["train"],
        heldout=real["heldout"],
        negatives=[bars(60, seed=5)],
        seeds=(0,),
        settings=TINY,
        sampling={"steps": 20},
    )
    json.dumps(out)
    assert out["sampling"] == {"steps": 20}
    assert (
        out["filter"]["dropped"]["noise"] == 5 and out["delivered"]["count"] >= 48
    )  # ~1 % of new images look like copies
    assert out["usefulness"]["counts"]["synthetic"] == out["delivered"]["count"]  # only filtered images are tested
    assert out["usefulness"]["real"]["value"] >= 0.9 and out["usefulness"]["gqi"]["value"] >= 80
    assert out["fid"]["features"] == "classes"
    no_held = quality.quality_report(generated=blobs(20, seed=3), train=real["train"], seeds=(0,), settings=TINY)
    assert no_held["usefulness"]["real"]["value"] is None
    assert no_held["realism_against"].startswith("half of the training photos")
    assert no_held["precision"]["reference"] is not None
    assert no_held["fid"]["features"] == "rotation"
