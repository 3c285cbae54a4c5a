"""The contract every generator type implements.

A generator type is a class derived from :class:`GeneratorType`, registered with
:func:`apps.generators.ml.registry.register`. The web form, the admin and the
API read their choices from the registry, so adding a type needs no UI change.

Images travel as float32 tensors shaped ``[N, C, H, W]`` with values in
``[-1, 1]`` (training input) and as uint8 tensors ``[N, C, H, W]`` on the CPU
(sampling output). ``C`` is 1 (grayscale) or 3 (RGB).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import torch

PRESETS = ("quick", "standard", "long")
RESOLUTIONS = (32, 64, 128)


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


class GeneratorType(ABC):
    """A trainable image generator: build, train (resumable), sample, save, load."""

    key: ClassVar[str]  # registry key, e.g. "dcgan"
    label: ClassVar[str]  # human name, e.g. "DCGAN (fast, GAN)"
    description: ClassVar[str]  # one or two plain sentences for non-experts
    uses_sampling_steps: ClassVar[bool] = False  # True: generation takes "steps"
    default_sampling_steps: ClassVar[int | None] = None
    small_set_preset: ClassVar[str] = "standard"  # the preset chosen for a set under 300 images when left out

    def __init__(self, config: dict, device: str | torch.device = "cpu"):
        self.config = dict(config)
        self.device = torch.device(device)

    @classmethod
    @abstractmethod
    def default_config(
        cls, *, resolution: int, channels: int, preset: str, image_count: int, device: str = "cpu"
    ) -> dict:
        """A JSON-serialisable config for this preset, dataset size and device.

        Must contain at least: resolution, channels, preset, total_steps,
        batch_size, checkpoint_every.
        """

    @abstractmethod
    def train(
        self,
        images: torch.Tensor,
        *,
        checkpoint_dir: Path,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> TrainResult:
        """Train on ``images`` (float32 [N,C,H,W] in [-1,1]).

        Resumes from the newest checkpoint in ``checkpoint_dir`` when there is
        one; writes a checkpoint (atomically) and a sample grid every
        ``config["checkpoint_every"]`` steps. Returns early, after a final
        checkpoint, when ``should_stop()`` turns true.
        """

    @abstractmethod
    def sample(self, n: int, *, seed: int, steps: int | None = None, batch_size: int = 256) -> torch.Tensor:
        """``n`` images as uint8 [n,C,H,W] on the CPU; the same seed gives the same images."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write ``weights.safetensors`` and ``config.json`` (no pickles)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, device: str | torch.device = "cpu") -> "GeneratorType":
        """Read what :meth:`save` wrote."""
