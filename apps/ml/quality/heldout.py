"""The held-out split: real photos kept out of a generator's training, for its quality report.

Held-out photos calibrate the copy check and are the usefulness test's test set. The split keeps each
group of near-duplicate shots (:mod:`dedupe`) on one side, so no photo of the test set was seen in
training under another name.
"""

from __future__ import annotations

import torch

from apps.ml.quality.dedupe import duplicate_groups, grouped_split


def holdout_count(image_count: int) -> int:
    """Real images kept out of training for the quality report: none below 40 images, else 15% (10-100)."""
    if image_count < 40:
        return 0
    return min(100, max(10, round(image_count * 0.15)))


def split_heldout(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, heldout): a seeded split of a uint8 [N,C,H,W] tensor that keeps near-duplicates together."""
    train_index, held_index = grouped_split(duplicate_groups(images), holdout_count(len(images)), seed)
    return images[train_index], images[held_index]


def split_heldout_by_class(
    images: torch.Tensor, labels: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, train labels, heldout, heldout labels): :func:`split_heldout` within each class, so every class
    keeps its share of held-out photos (none for a class under 40)."""
    parts: dict[str, list[torch.Tensor]] = {"train": [], "train_labels": [], "held": [], "held_labels": []}
    for label in torch.unique(labels).tolist():
        index = (labels == label).nonzero().flatten()
        train, held = split_heldout(images[index], seed=seed + label)
        parts["train"].append(train)
        parts["train_labels"].append(torch.full((len(train),), label, dtype=labels.dtype))
        parts["held"].append(held)
        parts["held_labels"].append(torch.full((len(held),), label, dtype=labels.dtype))
    train_images, train_labels, held_images, held_labels = (
        torch.cat(parts[key]) for key in ("train", "train_labels", "held", "held_labels")
    )
    return train_images, train_labels, held_images, held_labels
