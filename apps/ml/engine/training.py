"""What a generator type and the shared trainer hand each other.

:class:`~apps.ml.engine.base.GeneratorType` (the contract) and :mod:`apps.ml.engine.trainer` (the loop) both
import this module and not each other's internals: the trainer works on any :class:`Trainable` (the hooks a
type implements), the type builds :class:`TrainingParts`, turns its images into :data:`TrainingData` with
:func:`prepare_images` / :func:`prepare_labels`, and gets :class:`TrainProgress` reports and a
:class:`TrainResult` back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

from apps.ml.engine.ema import EMA


@dataclass
class TrainProgress:
    """One report from a training loop to whoever is watching it."""

    step: int
    total_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    sample_grid: Path | None = None  # set when a checkpoint wrote a grid
    checkpointed: bool = False
    warnings: list[str] = field(default_factory=list)  # e.g. mode collapse


@dataclass
class TrainResult:
    steps: int
    seconds: float
    final_losses: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stopped_early: bool = False  # should_stop() asked for it (cancel)


ProgressCallback = Callable[[TrainProgress], None]
StopCheck = Callable[[], bool]


@dataclass
class TrainingParts:
    """Everything a training run changes, as a type builds it; a checkpoint holds all of it.

    ``networks`` and ``optimizers`` are saved under their names; ``ema`` (when not None) averages
    ``networks[ema_of]`` after every step.
    """

    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    ema: EMA | None = None
    ema_of: str | None = None

    def __post_init__(self) -> None:
        if self.ema is not None and self.ema_of not in self.networks:
            raise ValueError(f"ema_of must name one of the networks {list(self.networks)}, not {self.ema_of!r}")

    @property
    def sampler(self) -> nn.Module:
        """The network to sample from: the EMA copy when there is one, else the first network."""
        if self.ema is not None:
            return self.ema.model
        return self.networks[self.ema_of] if self.ema_of else next(iter(self.networks.values()))


class LabelledImages(NamedTuple):
    """Training data with a class label per image: what a type that learns classes trains on."""

    images: torch.Tensor  # float [N, C, H, W] in [-1, 1] on the device
    labels: torch.Tensor  # int64 [N] in [0, num_classes) on the device


TrainingData = torch.Tensor | LabelledImages  # what a type's training_data returns and its training_step draws from


def images_and_labels(data: TrainingData) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images of ``data`` and their labels (None for unlabelled data)."""
    return (data.images, data.labels) if isinstance(data, LabelledImages) else (data, None)


def prepare_images(
    images: torch.Tensor,
    *,
    channels: int,
    resolution: int,
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Training images checked for shape, as float [-1, 1] on ``device`` (uint8 [0, 255] is scaled)."""
    expected = (channels, resolution, resolution)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"expected images shaped [N, {channels}, {resolution}, {resolution}], got {tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise ValueError("no training images")
    data = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
    return data.to(device, memory_format=memory_format)


def prepare_labels(
    labels: torch.Tensor | Sequence[int], *, count: int, num_classes: int, device: torch.device
) -> torch.Tensor:
    """Class labels checked against the images and the classes: int64 [count] on ``device``.

    ``labels``: a 1-d integer tensor (or a sequence of ints), one class index per image.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != count:
        raise ValueError(f"expected one label per image ({count}), got labels shaped {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
    if count and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) (num_classes {num_classes}); "
            f"got {int(labels.min())}..{int(labels.max())}"
        )
    return labels.to(device=device, dtype=torch.long)


class Trainable(Protocol):
    """What the shared trainer needs of a generator type (the hooks of :class:`~apps.ml.engine.base.GeneratorType`).

    ``config`` has at least ``total_steps``, ``report_every``, ``checkpoint_every`` and ``seed``.
    """

    config: Any
    device: torch.device

    def training_data(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> TrainingData: ...

    def training_parts(self) -> TrainingParts: ...

    def training_step(
        self, parts: TrainingParts, data: TrainingData, step: int, rng: torch.Generator
    ) -> dict[str, torch.Tensor]: ...

    def grid_samples(self, parts: TrainingParts, step: int) -> torch.Tensor: ...

    def check_samples(self, parts: TrainingParts, step: int, samples: torch.Tensor) -> list[str]: ...

    def result_warnings(self, latest: list[str], earlier: list[str]) -> list[str]: ...

    def finish_training(self, parts: TrainingParts, step: int) -> None: ...

    def architecture(self) -> dict[str, Any]: ...
