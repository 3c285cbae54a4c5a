"""Placing a mixed arm on the real photos' learning curve: synthetic curves with known answers."""

import json
import math

import numpy as np
import pytest

from apps.ml.quality.learning_curve import fit, photo_equivalent

SIZES = [30, 60, 120]  # 25 %, 50 %, 100 % of the short classes' photos


def curve(n):
    return 0.40 + 0.06 * math.log(n)


def seeds(value, noise, shift):
    """Five per-seed accuracies with mean exactly ``value`` (the noise's order differs by arm)."""
    offsets = np.roll(np.array([-2, -1, 0, 1, 2]) * noise, shift)
    return list(value + offsets)


def arms(noise=0.003):
    return [seeds(curve(n), noise, i) for i, n in enumerate(SIZES)]


def test_the_fit_recovers_a_log_linear_curve():
    intercept, slope = fit(SIZES, [curve(n) for n in SIZES])
    assert intercept == pytest.approx(0.40) and slope == pytest.approx(0.06)


def test_a_mixed_arm_as_good_as_twice_the_photos_is_worth_the_photos_it_adds():
    out = photo_equivalent(SIZES, arms(), seeds(curve(240), 0.003, 3))
    assert out["photos"] == pytest.approx(120, abs=1)  # 240 photos' accuracy = 120 more than the 120 there are
    assert out["low"] < 120 < out["high"] and out["low"] > 0 and out["verdict"] == "gain"
    assert out["accuracy_gain"] == pytest.approx(0.06 * math.log(2), abs=1e-6)
    assert out["fit"]["slope_per_doubling"] == pytest.approx(0.06 * math.log(2), abs=1e-6)
    assert out["fit"]["r2"] == pytest.approx(1.0)
    assert out["words"].startswith("worth about 120 more real photos (95 % interval ")
    json.dumps(out)
    # Half the gain in log photos: 120 * (sqrt(2) - 1) ~ 50 more photos; the interval is ordered and tighter
    # when the seeds agree better
    half = photo_equivalent(SIZES, arms(), seeds(curve(120 * math.sqrt(2)), 0.003, 3))
    assert half["photos"] == pytest.approx(120 * (math.sqrt(2) - 1), abs=1)
    quiet = photo_equivalent(SIZES, arms(0.0005), seeds(curve(240), 0.0005, 3))
    assert quiet["high"] - quiet["low"] < out["high"] - out["low"]


def test_a_mixed_arm_below_all_the_photos_is_no_gain_and_says_what_the_test_could_have_seen():
    out = photo_equivalent(SIZES, arms(), seeds(curve(120) - 0.01, 0.003, 3))
    assert out["photos"] == 0 and out["verdict"] == "none" and out["low"] == 0
    assert out["accuracy_gain"] == pytest.approx(-0.01, abs=1e-6)
    smallest = out["detectable"]
    assert 0 < smallest["accuracy"] < 0.02
    # the photos are read on the curve: 120 * (exp(accuracy / slope) - 1)
    assert smallest["photos"] == pytest.approx(120 * (math.exp(smallest["accuracy"] / 0.06) - 1), abs=0.2)
    assert out["words"].startswith("no gain") and "could have seen" in out["words"]
    # noisier seeds: a larger gain would have gone unseen
    noisy = photo_equivalent(SIZES, arms(0.01), seeds(curve(120) - 0.01, 0.01, 3))
    assert noisy["detectable"]["accuracy"] > smallest["accuracy"]


def test_a_gain_inside_the_noise_is_not_called_a_gain():
    out = photo_equivalent(SIZES, arms(0.02), seeds(curve(130), 0.02, 3))
    assert out["photos"] > 0 and out["low"] == 0 and out["verdict"] == "none"
    assert out["words"].startswith("no measurable gain")


def test_on_a_saturating_curve_the_estimate_errs_low_not_high():
    power = lambda n: 0.95 - 0.6 / math.sqrt(n)  # noqa: E731
    out = photo_equivalent([50, 100, 200], [[power(n)] * 3 for n in (50, 100, 200)], [power(300)] * 3)
    assert 30 < out["photos"] < 100  # truly 100 more photos


def test_a_flat_curve_has_no_photo_count():
    flat = [seeds(0.8, 0.003, i) for i in range(3)]
    out = photo_equivalent(SIZES, flat, seeds(0.85, 0.003, 3))
    assert out["photos"] is None and out["high"] is None and "does not rise" in out["words"]
    with pytest.raises(ValueError):
        photo_equivalent(SIZES, arms(), [0.9, 0.9])  # not the same seeds
