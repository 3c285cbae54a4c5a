"""Near-duplicate photos: thumbnails, groups of near-duplicates, and a filter.

Two uses in the quality report, both against leaks:

- the held-out split keeps a burst of near-identical shots on one side
  (:func:`duplicate_groups` + :func:`grouped_split`), so the test never holds a
  photo the generator saw in all but name;
- "not this class" images that match one of the class's own photos are dropped
  (:func:`drop_matches`): the same photos uploaded twice under two names must
  not become their own negatives.

Two images are near-duplicates when their 16x16 thumbnails (area-averaged, so
resizing, re-encoding and a pixel of shift hardly matter) differ by less than
:data:`NEAR_DUPLICATE_RMS` root-mean-square (pixels in [0, 1]). Measured on the
sample sets: distinct Fashion-MNIST sandals and shirts are at least 0.03 apart
(median nearest neighbour 0.11 to 0.13); near-identical emoji faces 0.005 to 0.02.
(Perceptual hashes such as dHash were tried first: on photos with a plain
background they called hundreds of distinct pairs duplicates.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

THUMBNAIL = 16
NEAR_DUPLICATE_RMS = 0.025  # about 6 grey levels of difference per thumbnail pixel


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """[N, C*16*16] float thumbnails of uint8 [N, C, H, W] images, pixels in [0, 1]."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 [N,C,H,W] images, got {images.dtype} {tuple(images.shape)}")
    return F.interpolate(images.float() / 255, size=(THUMBNAIL, THUMBNAIL), mode="area").flatten(1)


def _rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    distances: torch.Tensor = torch.cdist(a, b) / a.shape[1] ** 0.5
    return distances


def duplicate_groups(images: torch.Tensor, *, max_rms: float = NEAR_DUPLICATE_RMS) -> torch.Tensor:
    """[N] group label per image: near-duplicates share a label (transitively)."""
    n = len(images)
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    thumbs = thumbnails(images)
    close = _rms(thumbs, thumbs) < max_rms
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in torch.nonzero(torch.triu(close, diagonal=1)).tolist():
        parent[root(i)] = root(j)
    roots = [root(i) for i in range(n)]
    labels = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return torch.tensor([labels[r] for r in roots], dtype=torch.long)


def grouped_split(groups: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices): whole groups, in a seeded order, until ``count`` are held out.

    The held-out side gets as close to ``count`` images as whole groups allow without
    going over (a group larger than what is left is skipped, a later smaller one may fit).
    """
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    order = torch.randperm(n_groups, generator=torch.Generator().manual_seed(seed)).tolist()
    sizes = torch.bincount(groups, minlength=n_groups).tolist()
    held_groups, taken = set(), 0
    for g in order:
        if taken + sizes[g] <= count:
            held_groups.add(g)
            taken += sizes[g]
        if taken == count:
            break
    held = torch.tensor([int(g) in held_groups for g in groups], dtype=torch.bool)
    return torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()


def drop_matches(
    candidates: torch.Tensor, reference: torch.Tensor, *, max_rms: float = NEAR_DUPLICATE_RMS
) -> tuple[torch.Tensor, int]:
    """(the candidates that are near-duplicates of no reference image or its mirror, how many were dropped).

    Both tensors uint8 [N, C, H, W] of one channel count and size.
    """
    if len(candidates) == 0 or len(reference) == 0:
        return candidates, 0
    ref = torch.cat([thumbnails(reference), thumbnails(reference.flip(-1))])
    near = (_rms(thumbnails(candidates), ref) < max_rms).any(dim=1)
    return candidates[~near], int(near.sum())
