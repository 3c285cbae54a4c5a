"""The generation filter: noise, blank images and planted copies are dropped, good images kept."""

import json

import pytest
import torch

from apps.ml.quality import copies, filtering
from apps.ml.quality.dedupe import duplicate_groups
from tests.ml.constructed import blobs, noise


@pytest.fixture
def reference():
    return filtering.build_reference(blobs(40, seed=1), blobs(20, seed=2))


def test_noise_score_separates_noise_from_pictures():
    assert filtering.noise_scores(noise(20, seed=0)).min() > 0.7  # white noise ~0.79
    assert filtering.noise_scores(noise(5, seed=0, size=32, channels=3)).min() > 0.7
    assert filtering.noise_scores(blobs(20, seed=0)).max() < 0.2


def test_reference_thresholds(reference):
    t = reference.thresholds()
    json.dumps(t)
    assert t["copy_source"].startswith("every real photo against the training photos")
    assert t["copy_calibration_images"] == 60 and 0 < t["copy_ratio"] <= 0.5
    assert filtering.noise_scores(blobs(60, seed=3)).max() < t["noise"] < 0.79
    assert 0 < t["blank"] <= filtering.BLANK_STD
    assert t["copy"] > 0


def test_blank_and_noise_images_are_dropped(reference):
    grey = torch.full((3, 1, 16, 16), 128, dtype=torch.uint8)
    grey[1, 0, 4, 4] = 131  # one faint speck is still blank
    result = filtering.score_images(torch.cat([grey, noise(4, seed=5)]), reference)
    assert result.keep.tolist() == [False] * 7
    assert result.dropped == {"noise": 4, "blank": 3, "copy": 0}
    assert [s["dropped"] for s in result.scores] == ["blank"] * 3 + ["noise"] * 4


def test_mixed_batch_keeps_the_good_and_drops_planted_copies_and_noise(reference):
    good = blobs(12, seed=7)
    batch = torch.cat([good, reference.train[[4, 9]], noise(3, seed=8)])
    order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(0))
    batch = batch[order]
    expected_keep = order < 12
    result = filtering.score_images(batch, reference)
    assert result.keep.tolist() == expected_keep.tolist()
    assert result.dropped == {"noise": 3, "blank": 0, "copy": 2}
    copies = [s for s in result.scores if s["dropped"] == "copy"]
    assert sorted(s["nearest_train"] for s in copies) == [4, 9]
    assert all(s["copy_distance"] == 0.0 for s in copies)
    json.dumps(result.scores)
    # copies can be allowed through
    assert filtering.score_images(batch, reference, drop_copies=False).dropped["copy"] == 0


def test_generate_filtered_fills_the_count():
    reference = filtering.build_reference(blobs(40, seed=1), blobs(20, seed=2))
    calls = []

    def sample(n, seed):
        """Every third image is noise."""
        calls.append((n, seed))
        images = blobs(n, seed=100 + seed)
        images[::3] = noise(len(images[::3]), seed=seed)
        return images

    out = filtering.generate_filtered(sample, 20, reference, seed=10)
    assert len(out.images) == 20 and out.shortfall == 0
    assert out.dropped["noise"] >= 7 and out.generated >= 27
    assert len(calls) >= 2 and calls[0] == (20, filtering.stream_seed(10, 0, 0))
    assert calls[1][1] == filtering.stream_seed(10, 0, 1)
    assert filtering.score_images(out.images, reference).keep.all()
    first = out.scores[0]
    again = sample(first["batch_size"], first["seed"])[first["index"]]
    assert torch.equal(again, out.images[0])


def test_generate_filtered_reports_shortfall_and_can_be_off():
    reference = filtering.build_reference(blobs(40, seed=1))
    bad = filtering.generate_filtered(lambda n, seed: noise(n, seed), 5, reference, seed=0, max_rounds=3)
    assert len(bad.images) == 0 and bad.shortfall == 5 and bad.dropped["noise"] == bad.generated
    off = filtering.generate_filtered(lambda n, seed: noise(n, seed), 5, None, seed=0)
    assert len(off.images) == 5 and off.shortfall == 0 and off.generated == 5


def test_mirrored_copies_are_dropped_by_the_filter(reference):
    batch = torch.cat([blobs(10, seed=7), reference.train[[4, 9]].flip(-1)])
    result = filtering.score_images(batch, reference)
    assert result.dropped["copy"] == 2 and result.keep.tolist() == [True] * 10 + [False] * 2
    assert [s["nearest_train"] for s in result.scores[10:]] == [4, 9]


def test_stream_seeds_of_neighbouring_job_seeds_never_meet():
    seeds = {filtering.stream_seed(job, chunk, r) for job in (5, 6) for chunk in range(3) for r in range(10)}
    assert len(seeds) == 60 and all(0 <= s < 2**63 for s in seeds)
    assert filtering.stream_seed(5, 0, 1) == filtering.stream_seed(5, 0, 1)


def test_jobs_with_seeds_5_and_6_that_needed_refills_share_no_image():
    """The old scheme (round r sampled with seed + r) gave job 5's second round = job 6's first."""
    reference = filtering.build_reference(blobs(40, seed=1), blobs(20, seed=2))

    def sample(n, seed):
        """Like a real generator: image i depends on (seed, i) only; every other one is noise (dropped)."""
        return torch.cat(
            [
                noise(1, seed=(seed * 7919 + i) % 2**31) if i % 2 else blobs(1, seed=(seed * 7919 + i) % 2**31)
                for i in range(n)
            ]
        )

    five = filtering.generate_filtered(sample, 12, reference, seed=5)
    six = filtering.generate_filtered(sample, 12, reference, seed=6)
    assert five.generated > 12 and six.generated > 12  # both refilled
    keys = lambda batch: {bytes(img.numpy().tobytes()) for img in batch.images}  # noqa: E731
    assert len(keys(five)) == 12 and not keys(five) & keys(six)


def _smooth(n: int, scale: float, generator: torch.Generator, size: int = 16) -> torch.Tensor:
    coarse = torch.randn(n, 1, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) * scale


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.fixture
def long_tail():
    """A dense head class of 300 photos around one picture and a sparse tail class of 12 distinct ones
    (10 to train on, 2 held out), plus near-copies of the tail's photos and new photos of both classes."""
    g = torch.Generator().manual_seed(0)
    centre = 0.5 + _smooth(1, 0.2, g)
    head, tail = centre + _smooth(300, 0.08, g), centre + _smooth(12, 0.2, g)
    sources = torch.arange(40) % 10
    return {
        "train": _u8(torch.cat([head[:250], tail[:10]])),
        "labels": torch.tensor([0] * 250 + [1] * 10),
        "heldout": _u8(torch.cat([head[250:], tail[10:]])),
        "heldout_labels": torch.tensor([0] * 50 + [1] * 2),
        "tail_copies": _u8(tail[sources] + _smooth(40, 0.12, g)),
        "sources": 250 + sources,
        "new_tail": _u8(centre + _smooth(40, 0.2, g)),
        "new_head": _u8(centre + _smooth(40, 0.08, g)),
    }


def test_a_conditional_generators_copies_of_a_small_class_are_caught_by_its_own_thresholds(long_tail):
    """Thresholds calibrated on every class together are set by the dense head and let most copies of the
    tail's photos through; the tail's own thresholds catch them, and keep new photos of both classes."""
    pooled = filtering.build_reference(long_tail["train"], long_tail["heldout"])
    by_class = filtering.build_class_references(
        long_tail["train"],
        long_tail["labels"],
        2,
        heldout=long_tail["heldout"],
        heldout_labels=long_tail["heldout_labels"],
    )
    assert filtering.score_images(long_tail["tail_copies"], pooled).dropped["copy"] <= 10  # the defect
    caught = filtering.score_images(long_tail["tail_copies"], by_class[1])
    assert caught.dropped["copy"] >= 28
    # nearest_train is still an index into all the training photos: the copied photo itself
    hits = [s["nearest_train"] == int(src) for s, src in zip(caught.scores, long_tail["sources"]) if s["dropped"]]
    assert sum(hits) >= 0.9 * len(hits)
    assert filtering.score_images(long_tail["new_tail"], by_class[1]).dropped["copy"] <= 4
    assert filtering.score_images(long_tail["new_head"], by_class[0]).dropped["copy"] <= 4
    assert by_class[1].thresholds()["copy_calibration_images"] == 12  # the tail's own 12 photos
    assert by_class[0].noise_threshold == pooled.noise_threshold  # noise and blank limits stay shared


def test_a_class_too_small_to_calibrate_gets_the_pooled_copy_thresholds(long_tail):
    train = torch.cat([long_tail["train"][:250], long_tail["train"][250:251]])
    labels = torch.tensor([0] * 250 + [1])
    references = filtering.build_class_references(train, labels, 3)  # class 1: one photo; class 2: none
    # every class's photos, by the upper confidence bound as every class's limits (250 photos: just above the
    # one-class filter's estimate)
    pooled = copies.calibrate(train, None, duplicate_groups(train), confidence=copies.FILTER_CONFIDENCE)
    estimate = filtering.build_reference(train).copy_threshold
    assert estimate < pooled.distance < 1.1 * estimate
    for label in (1, 2):
        assert references[label].copy_threshold == pytest.approx(pooled.distance)
        assert "too few" in references[label].calibration["copy_calibrated_on"]
    assert len(references[1].train) == 1 and len(references[2].train) == len(train)
    limits = filtering.class_thresholds(references, ["head", "one", "none"])
    json.dumps(limits)
    assert set(limits["by_class"]) == {"head", "one", "none"} and "noise" in limits
    assert "copy" in limits["by_class"]["one"] and "noise" not in limits["by_class"]["one"]
