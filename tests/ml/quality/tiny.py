"""Quick classifier settings and constructed images for the quality tests."""

import torch

from apps.ml.quality.classifier import ClassifierSettings

TINY = ClassifierSettings(steps=40, batch_size=32, width=8)


def bars(n: int, seed: int, size: int = 16) -> torch.Tensor:
    """n uint8 grey images with one bright horizontal bar of random row, thickness and brightness."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    for i in range(n):
        row = int(torch.randint(1, size - 4, (1,), generator=g))
        thick = int(torch.randint(2, 4, (1,), generator=g))
        img[i, 0, row : row + thick, 2:-2] = int(torch.randint(128, 256, (1,), generator=g))
    return img
