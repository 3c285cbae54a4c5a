"""How different a set of images are from one another.

Used to spot mode collapse during GAN training (the fixed-noise samples start
to look alike) and by the quality report (generated vs. real diversity).
"""

from __future__ import annotations

import torch

COLLAPSE_THRESHOLD = 0.5  # samples' diversity below this share of the real images' diversity


def _as_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] or float [-1,1] images -> float32 [0,1], flattened to [N, D]."""
    if images.dtype == torch.uint8:
        x = images.float() / 255.0
    else:
        x = (images.float() + 1.0) / 2.0
    return x.reshape(images.shape[0], -1)


def mean_pairwise_distance(images: torch.Tensor, *, max_images: int = 256, seed: int = 0) -> float:
    """Mean distance between all pairs of images, per-pixel normalised.

    ``images``: [N, C, H, W] (or any [N, ...]), uint8 in [0, 255] or float in
    [-1, 1] (the package's two conventions); both map to [0, 1] first, so a
    uint8 set and a float set of the same pictures give the same number.

    The distance between two images is the root-mean-square pixel
    difference, ``||a - b||_2 / sqrt(number of values)``, so it lies in
    [0, 1] whatever the resolution: 0 for identical images, about 0.41 for
    two independent uniform-noise images. When ``N > max_images`` a random
    subset of ``max_images`` images (fixed by ``seed``) is used, which keeps
    the cost at ``max_images**2`` distances. Fewer than two images give 0.0.
    """
    n = images.shape[0]
    if n < 2:
        return 0.0
    if n > max_images:
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(n, generator=generator)[:max_images].to(images.device)
        images = images[keep]
        n = max_images
    x = _as_unit_float(images).double()
    distances = torch.cdist(x, x) / (x.shape[1] ** 0.5)
    pairs = n * (n - 1)
    return float(distances.sum() / pairs)  # the diagonal is zero, each pair counted twice


def mode_collapse_warning(
    sample_diversity: float, real_diversity: float, *, step: int | None = None, threshold: float = COLLAPSE_THRESHOLD
) -> str | None:
    """A plain-language warning when samples are far less varied than the real images, else None."""
    if real_diversity <= 0:
        return None
    ratio = sample_diversity / real_diversity
    if ratio >= threshold:
        return None
    where = f" at step {step}" if step is not None else ""
    return (
        f"mode collapse: samples look alike{where} (their variety is {ratio:.0%} of the training images'; "
        f"below {threshold:.0%} means the generator keeps making nearly the same picture)"
    )
