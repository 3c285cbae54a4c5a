"""Metrics on constructed cases with known answers (tiny 16 px images, no Django)."""

import math

import pytest
import torch

from apps.ml.quality import metrics
from apps.ml.quality.classifier import ClassifierSettings
from tests.ml.constructed import blobs, noise

TINY = ClassifierSettings(steps=40, batch_size=32, width=8)


def test_swd_identical_sets_zero_and_ordering():
    real = blobs(48, seed=1)
    same = metrics.sliced_wasserstein(real, real.clone(), seed=0)
    other_real = metrics.sliced_wasserstein(real, blobs(48, seed=2), seed=0)
    to_noise = metrics.sliced_wasserstein(real, noise(48, seed=3), seed=0)
    darker = metrics.sliced_wasserstein(real, (real // 2), seed=0)
    assert len(same["levels"]) == 2  # 16 px: one band-pass level at 16, the low-pass rest at 8
    assert same["mean"] < 1e-9
    assert other_real["mean"] < to_noise["mean"] / 3
    assert other_real["mean"] < darker["mean"]


def test_laplacian_pyramid_levels():
    x = torch.rand(2, 3, 32, 32)
    sizes = [tuple(level.shape[-2:]) for level in metrics.laplacian_pyramid(x, min_size=8)]
    assert sizes == [(32, 32), (16, 16), (8, 8)]
    flat = torch.full((1, 1, 16, 16), 0.5)
    band, low = metrics.laplacian_pyramid(flat, min_size=8)
    assert band.abs().max() < 1e-6 and torch.allclose(low, torch.full_like(low, 0.5))


def test_diversity_identical_collapsed_and_noise():
    real = blobs(40, seed=1)
    assert metrics.diversity_ratio(real.clone(), real) == pytest.approx(1.0)
    collapsed = real[:1].repeat(40, 1, 1, 1)
    assert metrics.diversity_ratio(collapsed, real) == pytest.approx(0.0, abs=1e-6)
    assert 0.8 < metrics.diversity_ratio(blobs(40, seed=2), real) < 1.25
    assert metrics.diversity_ratio(noise(40, seed=3), real) > 1.0


def test_frechet_distance_known_values():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 4, generator=g, dtype=torch.float64)
    assert metrics.frechet_distance(a, a.clone()) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(a, a + 1.0) == pytest.approx(4.0, rel=1e-6)  # ||shift||^2, same covariance
    # N(0, I) vs N(0, 4I): tr(I + 4I - 2*2I) = d
    assert metrics.frechet_distance(a, 2 * torch.randn(4000, 4, generator=g, dtype=torch.float64)) == pytest.approx(
        4.0, rel=0.1
    )


def test_kernel_distance_same_distribution_near_zero():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 8, generator=g, dtype=torch.float64)
    b = torch.randn(300, 8, generator=g, dtype=torch.float64)
    same = metrics.kernel_distance(a, b)
    shifted = metrics.kernel_distance(a, b + 0.5)
    assert abs(same) < shifted / 10
    assert shifted > 0


def test_feature_net_classes_and_rotation():
    real = blobs(30, seed=1)
    net = metrics.train_feature_net(real, [noise(30, seed=2)], settings=TINY)
    assert net.task == "classes"
    features = net(real)
    assert features.shape == (30, 32) and torch.isfinite(features).all()
    rot = metrics.train_feature_net(real, None, settings=TINY)
    assert rot.task == "rotation"
    f_real, f_noise = rot(real), rot(noise(30, seed=3))
    same = metrics.frechet_distance(f_real, rot(blobs(30, seed=4)))
    assert same < metrics.frechet_distance(f_real, f_noise)
    assert not math.isnan(same)
