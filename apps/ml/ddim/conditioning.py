"""Class conditioning of the DDIM U-Net: labels in, classifier-free guidance out.

A conditional model (config ``num_classes`` > 0) learns class ``0..num_classes-1`` and a "no label"
token (index ``num_classes``): training replaces a share ``label_dropout`` of the labels by it
(:func:`drop_labels`), so one network also learns the unconditional prediction that classifier-free
guidance (Ho & Salimans 2022) needs (:func:`guided`). :class:`ClassIndex` draws class-balanced batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from apps.ml.engine.base import SampleLabels
from apps.ml.engine.training import prepare_labels

Denoiser = Callable[..., torch.Tensor]  # denoise(x_t, t) or denoise(x_t, t, labels)


def guided(denoise: Denoiser, labels: torch.Tensor | None, guidance: float, *, no_label: int) -> Denoiser:
    """``denoise(x_t, t)`` for one batch: unconditional (no labels), conditional (guidance 1),
    or classifier-free guidance ``uncond + guidance * (cond - uncond)`` from one call on 2B images.
    ``no_label``: the "no label" token (the model's ``num_classes``)."""
    if labels is None:
        return denoise  # a conditional network without labels: the "no label" token
    if guidance == 1:
        return lambda x, t: denoise(x, t, labels)
    if guidance == 0:
        return lambda x, t: denoise(x, t, torch.full_like(labels, no_label))
    both = torch.cat([labels, torch.full_like(labels, no_label)])

    def guided_denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond, uncond = denoise(torch.cat([x, x]), torch.cat([t, t]), both).float().chunk(2)
        return uncond + guidance * (cond - uncond)

    return guided_denoise


def sampling_labels(
    labels: SampleLabels, n: int, *, num_classes: int, classes: Sequence[str], device: torch.device
) -> torch.Tensor | None:
    """``labels`` as int64 [n] on ``device``: None (no label), one class for all ``n`` images, or
    one per image, each a class index or (when the config names its ``classes``) a class name."""
    if labels is None:
        return None
    if not num_classes:
        raise ValueError("this DDIM model is unconditional (num_classes 0): it samples without labels")
    indices: torch.Tensor | list[int]
    if isinstance(labels, torch.Tensor):
        indices = [int(labels)] * n if labels.ndim == 0 else labels
    elif isinstance(labels, (int, str)):
        indices = [_class_index(labels, classes)] * n
    else:
        indices = [_class_index(label, classes) for label in labels]
    return prepare_labels(indices, count=n, num_classes=num_classes, device=device)


def _class_index(label: int | str, classes: Sequence[str]) -> int:
    if isinstance(label, str):
        if label not in classes:
            raise ValueError(f"unknown class {label!r}; the classes are {list(classes)}")
        return list(classes).index(label)
    return int(label)


def drop_labels(labels: torch.Tensor, share: float, *, no_label: int, generator: torch.Generator) -> torch.Tensor:
    """``labels`` with a random ``share`` of them replaced by the "no label" token."""
    dropped = torch.rand(labels.shape, device=labels.device, generator=generator) < share
    return torch.where(dropped, torch.full_like(labels, no_label), labels)


class ClassIndex:
    """Where each class's images sit in a label tensor, worked out once per training set (not every step)."""

    def __init__(self, labels: torch.Tensor):
        self.labels = labels
        self.counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
        self.present = torch.nonzero(self.counts).flatten()
        self.order = torch.argsort(labels, stable=True)  # the images of class 0, then of class 1, ...
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def draw(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """``size`` indices: a class drawn uniformly among the classes present, then one of its images uniformly
        (with replacement). Two draws per row whatever the data, so a seeded step is reproducible."""
        device = self.labels.device
        classes = self.present[torch.randint(0, len(self.present), (size,), device=device, generator=generator)]
        within = (torch.rand(size, device=device, generator=generator) * self.counts[classes]).long()
        return self.order[self.starts[classes] + within.clamp(max=self.counts[classes] - 1)]
