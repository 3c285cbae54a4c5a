"""The generation filter: noise, blank images and planted copies are dropped, good images kept."""
import json

import pytest
import torch

from apps.ml import filtering

from .constructed import blobs, noise


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
        return torch.cat([noise(1, seed=(seed * 7919 + i) % 2**31) if i % 2 else blobs(1, seed=(seed * 7919 + i) % 2**31)
                          for i in range(n)])

    five = filtering.generate_filtered(sample, 12, reference, seed=5)
    six = filtering.generate_filtered(sample, 12, reference, seed=6)
    assert five.generated > 12 and six.generated > 12  # both refilled
    keys = lambda batch: {bytes(img.numpy().tobytes()) for img in batch.images}  # noqa: E731
    assert len(keys(five)) == 12 and not keys(five) & keys(six)
