"""Constructed images with known properties, shared by the metric, filter, report, orientation and guidance tests."""

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


def wedges(n: int = 40, size: int = 16, seed: int = 0, both_ways: bool = False) -> torch.Tensor:
    """uint8 [N, 1, S, S]: a white wedge pointing right (its wide end left), varied in size and place;
    ``both_ways``: every other one points left."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n):
        length = int(torch.randint(size // 2, size - 2, (), generator=g))
        left, middle = (
            int(torch.randint(0, size - length, (), generator=g)),
            size // 2 + int(torch.randint(-2, 3, (), generator=g)),
        )
        along = (xs - left).float() / length  # 0 at the wide end, 1 at the tip
        inside = (along >= 0) & (along <= 1) & ((ys - middle).abs().float() <= (1 - along) * size / 3)
        images[i, 0][inside] = 255
        if both_ways and i % 2:
            images[i] = images[i].flip(-1)
    return images


def discs(n: int = 40, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 [N, 1, S, S]: centred discs of varied radius: left-right symmetric."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    radius = torch.rand(n, generator=g) * size / 4 + size / 8
    centre = (size - 1) / 2 + torch.randint(-1, 2, (n, 2), generator=g).float()
    inside = (ys - centre[:, 0, None, None]) ** 2 + (xs - centre[:, 1, None, None]) ** 2 <= radius[:, None, None] ** 2
    return (inside[:, None] * 255).to(torch.uint8)


def facing_other_way(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Share of ``images`` closer to the mirrored mean of ``reference`` than to its mean."""
    mean = reference.float().mean(0)
    x = images.float().flatten(1)
    return float(((x - mean.flip(-1).flatten()).pow(2).sum(1) < (x - mean.flatten()).pow(2).sum(1)).float().mean())
