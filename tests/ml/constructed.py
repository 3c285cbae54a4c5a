"""Constructed images with known properties, shared by the metric, filter and report tests."""

import torch


def blobs(n: int, seed: int, size: int = 16, channels: int = 1) -> torch.Tensor:
    """n uint8 images, each with two soft bright blobs of random place, width and brightness."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    img = torch.zeros(n, 1, size, size)
    for _ in range(2):
        cy, cx = torch.rand(2, n, 1, 1, generator=g) * (size - 6) + 3
        sigma = torch.rand(n, 1, 1, generator=g) * 2 + 1.5
        amp = torch.rand(n, 1, 1, generator=g) * 0.5 + 0.5
        img[:, 0] += amp * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, channels, 1, 1)


def noise(n: int, seed: int, size: int = 16, channels: int = 1) -> torch.Tensor:
    """n uint8 images of uniform white noise."""
    return torch.randint(
        0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def shapes(n: int, seed: int, size: int = 16, channels: int = 1) -> torch.Tensor:
    """n uint8 images of a sharp-edged hollow rectangle (random place, size and brightness) on black."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, 1, size, size)
    for i in range(n):
        h, w = (int(v) for v in torch.randint(6, size - 3, (2,), generator=g))
        top, left = (int(torch.randint(1, size - d, (1,), generator=g)) for d in (h, w))
        level = float(torch.rand((), generator=g)) * 0.4 + 0.6
        img[i, 0, top : top + h, left : left + w] = level
        img[i, 0, top + 2 : top + h - 2, left + 2 : left + w - 2] = 0
    return (img * 255).round().to(torch.uint8).repeat(1, channels, 1, 1)
