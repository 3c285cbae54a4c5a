"""Tensor <-> image helpers shared by the generator types."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8 on the CPU."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def to_pil(image: torch.Tensor) -> Image.Image:
    """One uint8 [C,H,W] tensor -> PIL image (L or RGB)."""
    array = image.permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0], mode="L")
    return Image.fromarray(array, mode="RGB")


def make_grid(images: torch.Tensor, columns: int | None = None, padding: int = 2) -> Image.Image:
    """uint8 [N,C,H,W] -> one PIL image with the N images in a grid."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = torch.full((c, rows * (h + padding) + padding, columns * (w + padding) + padding), 255, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        canvas[:, y : y + h, x : x + w] = images[i]
    return to_pil(canvas)


def save_grid(images: torch.Tensor, path: Path, columns: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    make_grid(images, columns).save(tmp, format="PNG")
    tmp.replace(path)
    return path
