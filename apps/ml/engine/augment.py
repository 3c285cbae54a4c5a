"""Image augmentation: offline dataset enlargement, DiffAugment for GANs, and non-leaking
augmentation for diffusion models.

Three different tools live here:

* :func:`augment_dataset` makes extra, slightly changed copies of the training
  images once, before training: a generator learns every copy as a real photo, so a copy may only
  change what the photos themselves show changing, and only exactly (no resampling). Mild brightness
  and contrast changes of the object, never of its background; mirror images and quarter turns only
  where the photos already show them (:mod:`.orientation`). The study's small rotations and crops
  (``resample=True``, kept for benchmarks) resample a small image, which blurs its fine detail: 6
  copies in 7 were blurred, and the generators learnt the blur and its grey halo (bench/README.md,
  "Faithful images").
* :func:`diff_augment` is DiffAugment (Zhao et al., 2020, "Differentiable
  Augmentation for Data-Efficient GAN Training"): random colour, translation
  and cutout applied to *both* real and generated images every time the
  discriminator sees them. It is differentiable, so the generator learns
  through it, and it stops the discriminator from memorising a small set.
* :func:`conditioned_augment` is the non-leaking augmentation of EDM (Karras et al., 2022,
  "Elucidating the Design Space of Diffusion-Based Generative Models", augmentation
  regularisation): each training image is, with probability ``p`` per operation, flipped, rotated
  by a multiple of 90 degrees and translated by whole pixels, and the network is told which
  (a short vector embedded next to the time step). Sampling passes the zero vector ("not
  augmented"), so the augmentations, even ones that are not in the data (a sandal upside down),
  do not leak into the generated images while the network still sees many more distinct inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

# ---------------------------------------------------------------- offline augmentation

MAX_ROTATION_DEGREES = 10.0
CROP_SCALE = (0.85, 1.0)  # share of the image area a random crop keeps
JITTER = 0.1  # brightness / contrast / saturation factors drawn from [1 - JITTER, 1 + JITTER]
AUGMENT_TARGET_IMAGES = 1000  # the offline stage adds copies until the set holds about this many images


def augmentation_copies(image_count: int) -> int:
    """Augmented copies per image: enough to reach about 1,000 images, between 1 and 9."""
    return max(1, min(9, math.ceil(AUGMENT_TARGET_IMAGES / max(image_count, 1)) - 1))


def augment_dataset(
    images: torch.Tensor,
    copies: int,
    seed: int,
    *,
    value_range: tuple[float, float] | None = None,
    mirror: bool = True,
    quarter_turns: bool = False,
    resample: bool = False,
) -> torch.Tensor:
    """The originals followed by ``copies`` augmented versions of each image.

    ``images``: [N, C, H, W], uint8 or float, C = 1 or 3. ``value_range`` is
    the range of float pixels (default ``(-1, 1)``, the package convention);
    uint8 images are always [0, 255]. The result has the input's dtype and
    shape ``[N * (1 + copies), C, H, W]``: rows ``0..N-1`` are the originals,
    then copy 1 of every image, then copy 2, and so on.

    Each copy gets, independently: a horizontal flip (half of the time; only
    with ``mirror``), a quarter turn by 90, 180 or 270 degrees (three times in
    four; only with ``quarter_turns``, square images), and brightness and contrast
    factors within +-10 % applied to the image's difference from its background (the border
    colour), so a plain background keeps its colour, and for RGB a saturation factor within
    +-10 %. Every change is exact: no pixel is interpolated. ``resample`` (the recipe before,
    for benchmarks) adds a rotation of at most 10 degrees whose uncovered corners take the image's
    border colour and a random square crop keeping 85-100 % of the area resized back to full size,
    both bilinear, which blur a small image's fine detail. The same ``seed`` gives the same result.
    """
    if copies < 0:
        raise ValueError("copies must be >= 0")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected [N, 1|3, H, W] images, got shape {tuple(images.shape)}")
    if copies == 0 or images.shape[0] == 0:
        return images.clone()

    unit = _to_unit(images, value_range)  # float32 [0, 1] on the CPU
    generator = torch.Generator().manual_seed(seed)
    out = [unit]
    turns = quarter_turns and images.shape[-1] == images.shape[-2]
    for _ in range(copies):
        out.append(
            torch.stack(
                [_augment_one(img, generator, mirror=mirror, quarter_turns=turns, resample=resample) for img in unit]
            )
        )
    return _from_unit(torch.cat(out), images.dtype, value_range, images.device)


def _to_unit(images: torch.Tensor, value_range: tuple[float, float] | None) -> torch.Tensor:
    x = images.detach().cpu()
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    low, high = value_range or (-1.0, 1.0)
    return ((x.float() - low) / (high - low)).clamp(0, 1)


def _from_unit(
    x: torch.Tensor, dtype: torch.dtype, value_range: tuple[float, float] | None, device: torch.device
) -> torch.Tensor:
    if dtype == torch.uint8:
        return (x * 255.0).round().clamp(0, 255).to(torch.uint8).to(device)
    low, high = value_range or (-1.0, 1.0)
    return (x * (high - low) + low).to(dtype).to(device)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _border_colour(image: torch.Tensor) -> torch.Tensor:
    """Median colour of the outermost pixel ring, per channel, as [C, 1, 1]: the background to fill with."""
    ring = torch.cat([image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], dim=1)
    return ring.median(dim=1).values[:, None, None]


def _rotate(image: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate about the centre; the uncovered corners take the border colour.

    The background is subtracted first so that the zero padding of the
    rotation *is* the background, and edge pixels blend into it smoothly
    (torchvision's own ``fill`` darkens the seam with bilinear interpolation).
    """
    background = _border_colour(image)
    rotated: torch.Tensor = TF.rotate(image - background, angle, interpolation=InterpolationMode.BILINEAR)
    return rotated + background


def _augment_one(
    image: torch.Tensor,
    generator: torch.Generator,
    *,
    mirror: bool = True,
    quarter_turns: bool = False,
    resample: bool = False,
) -> torch.Tensor:
    """One float [C, H, W] image in [0, 1] -> one moderately changed copy (see :func:`augment_dataset`). The
    random draws are the same with and without ``resample``, so the colour changes stay the same."""
    channels, height, width = image.shape
    flip = float(torch.rand((), generator=generator)) < 0.5  # drawn either way: the other draws stay the same
    if mirror and flip:
        image = image.flip(-1)
    if quarter_turns:
        image = image.rot90(int(torch.randint(0, 4, (), generator=generator)), dims=(1, 2))

    angle = _uniform(generator, -MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
    scale = _uniform(generator, *CROP_SCALE)
    side_h = max(1, round(height * math.sqrt(scale)))
    side_w = max(1, round(width * math.sqrt(scale)))
    top = int(torch.randint(0, height - side_h + 1, (), generator=generator))
    left = int(torch.randint(0, width - side_w + 1, (), generator=generator))
    if resample:
        image = _rotate(image, angle)
        image = TF.resized_crop(image, top, left, side_h, side_w, [height, width], antialias=True)

    # Brightness and contrast change the object against its background, never the background itself:
    # torchvision's contrast blends every pixel with the image's mean grey and its brightness scales the
    # background too, which turned the black backgrounds of 6 copies in 7 grey (a product sandal's
    # background 3.3/255 instead of 1.1, pure black 33 % of it instead of 58 %) - and the generators
    # learnt the grey (bench/README.md, "Faithful images"). The factors are drawn as before.
    background = _border_colour(image)
    brightness = _uniform(generator, 1 - JITTER, 1 + JITTER)
    contrast = _uniform(generator, 1 - JITTER, 1 + JITTER)
    image = background + (image - background) * (brightness * contrast)
    if channels == 3:
        image = TF.adjust_saturation(image.clamp(0, 1), _uniform(generator, 1 - JITTER, 1 + JITTER))
    return image.clamp(0, 1)


# ---------------------------------------------------------------- DiffAugment

DEFAULT_POLICY = "color,translation,cutout"
TRANSLATION_RATIO = 1 / 8  # largest shift, as a share of the image side
CUTOUT_RATIO = 1 / 2  # side of the erased square, as a share of the image side


def diff_augment(
    x: torch.Tensor, policy: str = DEFAULT_POLICY, generator: torch.Generator | None = None
) -> torch.Tensor:
    """DiffAugment: the same random transform family for real and fake batches.

    ``x``: float [N, C, H, W] in [-1, 1] (gradients flow through). ``policy``
    is a comma-separated subset of ``color``, ``translation`` and ``cutout``
    (empty: no change). Each image of the batch gets its own random draw;
    ``generator`` (on ``x``'s device) makes the draws reproducible.
    Returns a tensor of the same shape.
    """
    for name in [p.strip() for p in policy.split(",") if p.strip()]:
        try:
            op = _DIFF_OPS[name]
        except KeyError:
            raise ValueError(f"unknown DiffAugment op {name!r}; known: {', '.join(_DIFF_OPS)}") from None
        x = op(x, generator)
    return x


def _rand(x: torch.Tensor, generator: torch.Generator | None, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, device=x.device, dtype=x.dtype, generator=generator)


def _colour(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Random brightness shift (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) per image."""
    n = x.shape[0]
    x = x + (_rand(x, generator, n, 1, 1, 1) - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (_rand(x, generator, n, 1, 1, 1) * 2) + grey  # no-op for one channel
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (_rand(x, generator, n, 1, 1, 1) + 0.5) + mean
    return x


def _translation(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Shift each image by up to 1/8 of its size; uncovered pixels become 0 (mid-grey)."""
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n, 1), device=x.device, generator=generator)
    dx = torch.randint(-max_dx, max_dx + 1, (n, 1), device=x.device, generator=generator)
    # Source row/column for each output pixel, in a copy padded by one zero pixel on every side.
    rows = (torch.arange(h, device=x.device) + dy + 1).clamp(0, h + 1)  # [N, H]
    cols = (torch.arange(w, device=x.device) + dx + 1).clamp(0, w + 1)  # [N, W]
    padded = F.pad(x, (1, 1, 1, 1))
    batch = torch.arange(n, device=x.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]
    return shifted.permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Set a random square of half the image side to 0 (mid-grey) in each image."""
    n, _, h, w = x.shape
    cut_h, cut_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    # Top-left corner of the square; it may hang over the edge, as in the paper.
    top = torch.randint(0, h + (1 - cut_h % 2), (n, 1, 1), device=x.device, generator=generator) - cut_h // 2
    left = torch.randint(0, w + (1 - cut_w % 2), (n, 1, 1), device=x.device, generator=generator) - cut_w // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + cut_h) & (xs >= left) & (xs < left + cut_w)  # [N, H, W]
    return x * (~inside).unsqueeze(1).to(x.dtype)


_DIFF_OPS = {"color": _colour, "translation": _translation, "cutout": _cutout}


# ---------------------------------------------------------------- non-leaking (conditioned) augmentation

# The augmentation vector: [flipped, cos(angle) - 1, sin(angle), x shift / width, y shift / height].
# All zero for an image left as it was.
AUGMENT_DIM = 5
AUGMENT_TRANSLATION = 1 / 8  # largest shift, as a share of the image side


def conditioned_augment(
    x: torch.Tensor, p: float, generator: torch.Generator | None = None, *, flip: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Geometric augmentation whose parameters the network is conditioned on (see the module notes).

    ``x``: float [N, C, H, W]. Each image, independently, is flipped left-right with probability
    ``p``, rotated by 90, 180 or 270 degrees with probability ``p`` (square images only), and
    shifted by up to 1/8 of its side in whole pixels (at least one) with probability ``p``, the
    uncovered border mirrored in from the image (no black or grey edge the network could spot).
    Returns ``(images, vectors)``: the augmented images (same shape and dtype) and float
    [N, :data:`AUGMENT_DIM`] vectors describing what each image went through, zeros for an image
    left alone. ``flip`` False leaves flips out (the flip entry stays 0). All randomness comes from
    ``generator`` (on ``x``'s device); the number of draws does not depend on the data, so a seeded
    training step stays reproducible.
    """
    n, _, h, w = x.shape
    device = x.device
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if p == 0 or n == 0:
        return x, torch.zeros(n, AUGMENT_DIM, device=device, dtype=x.dtype)

    def chosen() -> torch.Tensor:
        return torch.rand(n, device=device, generator=generator) < p

    flipped = chosen() & flip
    x = torch.where(flipped[:, None, None, None], x.flip(3), x)

    rotate = chosen() & (h == w)
    quarter_turns = torch.randint(1, 4, (n,), device=device, generator=generator) * rotate
    if h == w:
        for turns in (1, 2, 3):
            x = torch.where((quarter_turns == turns)[:, None, None, None], x.rot90(turns, dims=(2, 3)), x)

    shift = chosen()
    max_y, max_x = max(1, round(h * AUGMENT_TRANSLATION)), max(1, round(w * AUGMENT_TRANSLATION))
    dy = torch.randint(-max_y, max_y + 1, (n,), device=device, generator=generator) * shift
    dx = torch.randint(-max_x, max_x + 1, (n,), device=device, generator=generator) * shift
    rows = _mirror(torch.arange(h, device=device)[None, :] - dy[:, None], h)  # [N, H] source rows
    cols = _mirror(torch.arange(w, device=device)[None, :] - dx[:, None], w)  # [N, W] source columns
    batch = torch.arange(n, device=device)[:, None, None]
    x = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()

    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=device, dtype=x.dtype)[quarter_turns]  # exact, no rounding
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=device, dtype=x.dtype)[quarter_turns]
    vectors = torch.stack([flipped.to(x.dtype), cos - 1, sin, dx.to(x.dtype) / w, dy.to(x.dtype) / h], dim=1)
    return x, vectors


def _mirror(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside [0, size) reflected back in (..., 2, 1, 0, 1, 2, ..., size - 2, size - 1, size - 2, ...)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    return (size - 1) - ((size - 1) - index.remainder(period)).abs()
