"""Offline dataset augmentation and DiffAugment (pure PyTorch, no Django)."""

import pytest
import torch

from apps.ml.engine.augment import augment_dataset, diff_augment


def _object_on_white(n: int = 6, size: int = 32, channels: int = 3) -> torch.Tensor:
    """uint8 images: a dark square (of varying position) on a white background."""
    images = torch.full((n, channels, size, size), 255, dtype=torch.uint8)
    for i in range(n):
        top = 8 + i % 4
        images[i, :, top : top + 12, 10 : 10 + 12] = 30
    return images


# ---------------------------------------------------------------- augment_dataset


@pytest.mark.parametrize("channels", [1, 3])
def test_augment_dataset_uint8_shape_originals_first_and_deterministic(channels):
    images = _object_on_white(channels=channels)
    out = augment_dataset(images, copies=2, seed=5)
    assert out.shape == (18, channels, 32, 32)
    assert out.dtype == torch.uint8
    assert torch.equal(out[:6], images)  # originals untouched, first
    assert not torch.equal(out[6:12], images)  # the copies are changed
    assert torch.equal(out, augment_dataset(images, copies=2, seed=5))
    assert not torch.equal(out, augment_dataset(images, copies=2, seed=6))


def test_augment_dataset_float_keeps_range_and_dtype():
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    out = augment_dataset(images, copies=3, seed=0)
    assert out.shape == (16, 3, 16, 16)
    assert out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    assert torch.allclose(out[:4], images)


def test_resampled_copies_are_moderate_and_fill_corners_with_background():
    images = _object_on_white(n=8)
    copies = augment_dataset(images, copies=4, seed=1, resample=True)[8:].float()
    # Rotations fill the uncovered corners with the white border colour, never black.
    corners = torch.stack([copies[:, :, 0, 0], copies[:, :, 0, -1], copies[:, :, -1, 0], copies[:, :, -1, -1]])
    assert corners.min() > 200
    # The dark object is still there and roughly the same size (nothing distorts it away).
    dark_share_before = (images.float() < 128).float().mean()
    dark_share_after = (copies < 128).float().mean()
    assert 0.75 * dark_share_before < dark_share_after < 1.35 * dark_share_before


@pytest.mark.parametrize("background, object_value", [(0, 200), (255, 40)])
@pytest.mark.parametrize("channels", [1, 3])
def test_augmented_copies_keep_a_plain_background_exactly(background, object_value, channels):
    """Brightness and contrast change the object, not the background: black stays black, white stays white
    (torchvision's contrast blends in the mean grey, its brightness scales the background: a generator
    trained on such copies learnt grey backgrounds)."""
    images = torch.full((8, channels, 32, 32), background, dtype=torch.uint8)
    images[:, :, 12:20, 12:20] = object_value
    copies = augment_dataset(images, copies=6, seed=3, mirror=False)[8:]
    corners = torch.cat([copies[..., :4, :4], copies[..., :4, -4:], copies[..., -4:, :4], copies[..., -4:, -4:]])
    assert (corners == background).all()
    middle = copies[..., 15:17, 15:17].float()
    assert middle.std() > 1  # the jitter still changes the object


def test_augment_dataset_zero_copies_and_bad_input():
    images = _object_on_white(n=2)
    assert torch.equal(augment_dataset(images, copies=0, seed=0), images)
    with pytest.raises(ValueError):
        augment_dataset(images, copies=-1, seed=0)
    with pytest.raises(ValueError):
        augment_dataset(torch.zeros(2, 2, 8, 8), copies=1, seed=0)


# ---------------------------------------------------------------- DiffAugment


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
@pytest.mark.parametrize("channels", [1, 3])
def test_diff_augment_keeps_shape_and_passes_gradients(policy, channels):
    x = (torch.rand(4, channels, 16, 16) * 2 - 1).requires_grad_(True)
    y = diff_augment(x, policy)
    assert y.shape == x.shape
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_diff_augment_is_random_per_image_and_reproducible_with_a_generator():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    a = diff_augment(x, generator=torch.Generator().manual_seed(0))
    b = diff_augment(x, generator=torch.Generator().manual_seed(0))
    c = diff_augment(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    same_input = x[:1].expand(8, -1, -1, -1)
    out = diff_augment(same_input, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(out[0], out[1])  # each image gets its own draw


def test_translation_shifts_content_and_pads_with_zero():
    x = torch.ones(16, 1, 16, 16)
    y = diff_augment(x, "translation", generator=torch.Generator().manual_seed(0))
    zero_share = (y == 0).float().mean(dim=(1, 2, 3))
    # A shift of at most 2 px (1/8 of 16) uncovers at most 2 rows + 2 columns.
    assert zero_share.max() <= (2 * 16 + 2 * 16) / 256
    assert zero_share.max() > 0
    assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_cutout_erases_a_square_of_half_the_side():
    x = torch.ones(32, 1, 16, 16)
    y = diff_augment(x, "cutout", generator=torch.Generator().manual_seed(0))
    erased = (y == 0).sum(dim=(1, 2, 3))
    assert erased.max() == 64  # an 8 x 8 square when fully inside
    assert erased.min() > 0


def test_empty_policy_is_identity_and_unknown_op_raises():
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(diff_augment(x, ""), x)
    with pytest.raises(ValueError):
        diff_augment(x, "color,rotate")


def _fine_detail(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, per image: the energy of the finest detail."""
    x = images.float()
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3)) + (x[..., :, 1:] - x[..., :, :-1]).abs().mean(
        dim=(1, 2, 3)
    )


def test_copies_keep_fine_detail_exactly_where_resampling_blurred_it():
    """A generator learns every copy as a photo: copies of thin straps must stay thin straps. The exact copies
    change only brightness and contrast (fine detail scales with them, at most +-21 %); the study's small rotation
    and crop, resampled at 32 px, took away about a third of it (and the generators learnt the blur)."""
    images = torch.zeros(8, 1, 32, 32, dtype=torch.uint8)
    images[:, :, 8:24:2, 6:26] = 200  # one-pixel stripes, like a sandal's straps
    before = _fine_detail(images)
    exact = augment_dataset(images, copies=6, seed=2, mirror=False)[8:]
    resampled = augment_dataset(images, copies=6, seed=2, mirror=False, resample=True)[8:]
    ratio = _fine_detail(exact) / before.repeat(6)
    assert ratio.min() > 0.79 and ratio.max() < 1.22
    stripes = exact[:, :, 8:24, 6:26].float()
    assert (stripes[:, :, 1::2] == 0).all() and (stripes[:, :, ::2] > 150).all()  # not a pixel moved or smeared
    assert (_fine_detail(resampled) / before.repeat(6)).mean() < 0.8
