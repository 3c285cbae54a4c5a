"""Near-copies through mirrors, augmentation and shifts; leave-one-out calibration; the data-copying test;
near-duplicate grouping; realism and coverage at matched sizes."""

import math

import pytest
import torch

from apps.ml.engine.augment import augment_dataset
from apps.ml.quality import copies, dedupe, filtering, realism
from tests.ml.constructed import blobs, noise


@pytest.fixture(scope="module")
def photos():
    return blobs(60, seed=1)


@pytest.fixture(scope="module")
def thresholds(photos):
    return copies.calibrate(photos[:45], photos[45:])


def test_calibration_uses_every_photo_and_flags_about_one_in_a_hundred_new_ones(photos, thresholds):
    assert thresholds.calibration_images == 60  # all photos, the 15 held-out ones too
    assert 0 < thresholds.distance < 0.2 and 0 < thresholds.ratio <= copies.RATIO_CAP
    fresh = copies.detect(blobs(200, seed=2), copies.build_reference(photos), thresholds)
    assert fresh["share"] <= 0.05


def test_mirrored_and_shifted_copies_are_caught_plain_pixels_would_miss_them(photos, thresholds):
    reference = copies.build_reference(photos)
    mirrored = photos[:20].flip(-1)
    shifted = torch.roll(photos[20:40], shifts=(2, -1), dims=(-2, -1))
    found = copies.detect(torch.cat([mirrored, shifted]), reference, thresholds)
    assert found["share"] == 1.0
    assert found["nearest"] == list(range(40))
    # the plain pixel distance of a mirror image to its photo is far above the threshold
    plain = (mirrored.float() - photos[:20].float()).div(255).square().mean(dim=(1, 2, 3)).sqrt()
    assert (plain > thresholds.distance).float().mean() > 0.5


def test_augmented_copies_count_as_copies_of_their_photo(photos, thresholds):
    augmented = augment_dataset(photos, copies=2, seed=3)
    found = copies.detect(augmented[60:], copies.build_reference(photos, augmented), thresholds)
    assert found["share"] == 1.0 and found["nearest"] == list(range(60)) * 2
    with pytest.raises(ValueError, match="start with the photos"):
        copies.build_reference(photos, augmented[60:])


def test_a_denser_pool_with_augmented_copies_is_calibrated_with_them(photos):
    """Augmented copies bring every image closer; a threshold calibrated without them would flag new photos."""
    train, held = photos[:45], photos[45:]
    augmented = augment_dataset(train, copies=6, seed=4)
    with_aug = copies.calibrate(train, held, augmented=augmented)
    assert with_aug.distance < copies.calibrate(train, held).distance
    fresh = copies.detect(blobs(200, seed=2), copies.build_reference(train, augmented), with_aug)
    assert fresh["share"] <= 0.05


def test_exact_duplicates_in_the_data_do_not_collapse_the_threshold(photos):
    with_dupes = torch.cat([photos, photos[:5]])
    assert copies.calibrate(with_dupes, None, dedupe.duplicate_groups(with_dupes)).distance > copies.DUPLICATE_FLOOR


def test_the_order_statistic_bound_is_the_binomial_answer():
    """30 values, the 1 % quantile, 90 %: none of 30 falls below it with probability 0.99^30 = 0.74, at most one
    with 0.96, so the bound is the second smallest; from 1,000 values it is the 15th smallest (the count below is
    binomial(1000, 0.01): P(<= 14) = 0.92, P(<= 13) = 0.87)."""
    values = torch.arange(1.0, 31.0)
    assert copies.order_statistic_bound(values, 0.01, 0.9) == 2.0
    assert copies.order_statistic_bound(values, 0.01, 0.7) == 1.0
    assert copies.order_statistic_bound(torch.arange(1.0, 1001.0), 0.01, 0.9) == 15.0


def test_the_lognormal_bound_covers_the_true_quantile_about_as_often_as_it_says():
    """Drawn from a known log-normal, 30 at a time: the 90 % bound lies above the true 1 % quantile in about 90 %
    of draws, the estimate in about half; from many values bound and estimate agree."""
    generator = torch.Generator().manual_seed(0)
    true_q = math.exp(-2.0 + 0.3 * -2.3263478740408408)  # exp(mean + spread * z_0.01)
    draws = [torch.exp(-2.0 + 0.3 * torch.randn(30, generator=generator, dtype=torch.float64)) for _ in range(2000)]
    covered = sum(copies.lognormal_quantile(d, 0.01, 0.9) >= true_q for d in draws) / len(draws)
    estimate = sum(copies.lognormal_quantile(d, 0.01) >= true_q for d in draws) / len(draws)
    assert 0.86 <= covered <= 0.94, covered
    assert 0.4 <= estimate <= 0.6, estimate
    many = torch.exp(-2.0 + 0.3 * torch.randn(200_000, generator=generator, dtype=torch.float64))
    assert copies.lognormal_quantile(many, 0.01, 0.9) == pytest.approx(copies.lognormal_quantile(many, 0.01), rel=0.01)


def test_the_copy_limits_of_a_small_class_err_on_the_side_of_dropping(photos):
    """A conditional generator's filter: a class of 30 photos gets the upper confidence bound as its limits,
    above the estimate; a class of 600 nearly the estimate; the one-class filter (and the report) the estimate."""
    few, many = photos[:30], blobs(600, seed=7)
    estimate = copies.calibrate(few, None)
    bound = copies.calibrate(few, None, confidence=copies.FILTER_CONFIDENCE)
    assert bound.distance > estimate.distance and bound.ratio >= estimate.ratio
    labels = torch.cat([torch.zeros(30, dtype=torch.long), torch.ones(600, dtype=torch.long)])
    by_class = filtering.build_class_references(torch.cat([few, many]), labels, 2)
    assert by_class[0].copy_thresholds == bound
    big = copies.calibrate(many, None)
    assert big.distance <= by_class[1].copy_thresholds.distance < 1.06 * big.distance
    assert filtering.build_reference(few).copy_thresholds == estimate


def test_worst_pairs_closest_first(photos, thresholds):
    planted = blobs(10, seed=4)
    planted[3] = photos[5]
    result = copies.detect(planted, copies.build_reference(photos), thresholds, worst=3)
    assert result["worst"][0] == {"generated": 3, "train": 5, "distance": 0.0}
    assert [p["distance"] for p in result["worst"]] == sorted(p["distance"] for p in result["worst"])


def test_mann_whitney_known_values():
    a, b = torch.arange(10.0), torch.arange(10.0) + 100
    n1 = n2 = 10
    expected = (0 - n1 * n2 / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    assert copies.mann_whitney_z(a, b) == pytest.approx(expected)
    assert copies.mann_whitney_z(b, a) == pytest.approx(-expected)
    assert copies.mann_whitney_z(a, a.clone()) == pytest.approx(0.0)


def test_memorisation_test_tells_copies_from_new_images(photos):
    train, held = photos[:40], photos[40:]
    reference = copies.build_reference(train)
    held_d = copies.nearest_photos(held, reference).distance
    memorised = copies.nearest_photos(train[:30].flip(-1), reference).distance
    new = copies.nearest_photos(blobs(60, seed=5), reference).distance
    far = copies.nearest_photos(noise(30, seed=6), reference).distance
    assert copies.memorisation_test(memorised, held_d)["z"] < -4
    assert abs(copies.memorisation_test(new, held_d)["z"]) < 2.5
    assert copies.memorisation_test(far, held_d)["z"] > 4


def test_duplicate_groups_and_grouped_split():
    base = blobs(20, seed=7)
    burst = torch.cat([base, (base[:4].int() + 3).clamp(0, 255).to(torch.uint8)])  # 4 near-identical shots
    groups = dedupe.duplicate_groups(burst)
    assert all(groups[i] == groups[20 + i] for i in range(4))
    assert len(set(groups.tolist())) >= 18  # distinct images stay apart
    for seed in range(5):
        train, held = dedupe.grouped_split(groups, 6, seed)
        assert len(held) <= 6 and len(train) + len(held) == 24
        assert not set(groups[train].tolist()) & set(groups[held].tolist())


def test_drop_matches_removes_the_class_own_photos_even_mirrored_or_brightened():
    own = blobs(20, seed=8)
    others = blobs(15, seed=9)
    brighter = (own[6:8].int() + 4).clamp(0, 255).to(torch.uint8)
    candidates = torch.cat([others, own[:3], own[3:6].flip(-1), brighter])
    kept, dropped = dedupe.drop_matches(candidates, own)
    assert dropped == 8 and torch.equal(kept, others)


def test_prdc_identical_disjoint_and_matched_references():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(40, 8, generator=g)
    same = realism.prdc(real, real.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = realism.prdc(real, torch.randn(40, 8, generator=g) + 50)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    one_mode = realism.prdc(real, real[:1].repeat(40, 1) + 0.01 * torch.randn(40, 8, generator=g))
    assert one_mode["precision"] == 1.0 and one_mode["coverage"] < 0.2
    out = realism.matched(real[:20], torch.randn(200, 8, generator=g), real[20:], repeats=5)
    assert out["precision"]["images"] == 20
    assert 0.4 < out["precision"]["value"] / out["precision"]["reference"] < 2.5
