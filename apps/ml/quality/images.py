"""uint8 image batches for the quality measures: to floats, to another format, a seeded train / held-out cut."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,C,H,W] -> float32 in [0, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected [N,C,H,W] with C in (1, 3), got {tuple(images.shape)}")
    return images.float() / 255.0


def match_format(images: torch.Tensor, *, channels: int, size: int | tuple[int, int]) -> torch.Tensor:
    """Convert uint8 images to ``channels`` (1 or 3) and ``size`` (for negatives from other datasets)."""
    x = to_unit_float(images)
    if x.shape[1] != channels:
        if channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x * weights).sum(1, keepdim=True)
        else:
            x = x.expand(-1, 3, -1, -1)
    target = (size, size) if isinstance(size, int) else (size[0], size[1])
    if tuple(x.shape[-2:]) != target:
        x = F.interpolate(x, size=target, mode="bilinear", antialias=True, align_corners=False)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def split(images: torch.Tensor, *, holdout: float | int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle with ``seed`` and cut into (train, held-out); ``holdout`` is a fraction or a count."""
    n = len(images)
    n_out = holdout if isinstance(holdout, int) else round(n * holdout)
    n_out = max(0, min(n, n_out))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return images[order[n_out:]], images[order[:n_out]]
