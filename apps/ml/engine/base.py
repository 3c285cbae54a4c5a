"""The contract every generator type implements.

A generator type is a class derived from :class:`GeneratorType`, registered with
:func:`apps.ml.engine.registry.register`. The web form, the admin and the
API read their choices from the registry, so adding a type needs no UI change.

A type does not write a training loop: :meth:`GeneratorType.train` hands it to
:mod:`.trainer`, which owns the loop, progress reports, the cancel check,
checkpoints, resuming, reseeding, the EMA and sample grids. A type supplies
its networks and optimizers (:meth:`~GeneratorType.training_parts`), one
training step, its architecture keys and a sample grid; see the hooks below.

Images travel as float32 tensors shaped ``[N, C, H, W]`` with values in
``[-1, 1]`` (training input) and as uint8 tensors ``[N, C, H, W]`` on the CPU
(sampling output). ``C`` is 1 (grayscale) or 3 (RGB).

A type with ``supports_labels`` learns classes: its config has ``num_classes`` (and ``classes``,
their names), it trains on ``train(images, labels=...)`` (int [N], one class index per image) and
samples with ``sample(n, ..., labels=...)``. The other types refuse labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:
    from apps.ml.engine.trainer import TrainingParts

PRESETS = ("quick", "standard", "long")
RESOLUTIONS = (32, 64, 128)
MAX_SAMPLING_STEPS = 1000  # the most sampling steps generation accepts (the API, the form and the service)


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
    supports_labels: ClassVar[bool] = False  # True: learns classes (config num_classes; train/sample with labels)
    supports_fine_tuning: ClassVar[bool] = False  # True: can start from a base generator (weights_from_base)
    # The newest architecture version of this type's networks that this code builds and loads (exported files
    # carry theirs: apps.ml.engine.portable refuses a newer one).
    newest_architecture_version: ClassVar[int] = 1

    # Fine-tuning (apps.ml.engine.transfer): the weights each network of ``training_parts`` starts from, by network name
    # (None: the seeded random initialisation). A resumed run loads its checkpoint over them.
    start_weights: dict[str, dict[str, torch.Tensor]] | None = None

    # The type's typed config (a :class:`~.config.TrainingConfig`); a type without one works with a dict.
    config_class: ClassVar[type | None] = None

    def __init__(self, config: dict, device: str | torch.device = "cpu"):
        self.config = self.config_class.from_dict(config) if self.config_class else dict(config)
        self.device = torch.device(device)

    @classmethod
    def default_config(
        cls, *, resolution: int, channels: int, preset: str, image_count: int, device: str = "cpu"
    ) -> dict:
        """A JSON-serialisable config for this preset, dataset size and device.

        Must contain at least: resolution, channels, preset, total_steps,
        batch_size, checkpoint_every (and report_every and seed to train with the shared trainer).
        """
        if cls.config_class is None:
            raise NotImplementedError(f"{cls.__name__} has no config_class; define default_config")
        return cls.config_class.from_preset(
            resolution=resolution, channels=channels, preset=preset, image_count=image_count, device=device
        ).to_dict()

    def train(
        self,
        images: torch.Tensor,
        *,
        checkpoint_dir: Path,
        labels: torch.Tensor | None = None,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> TrainResult:
        """Train on ``images`` (float32 [N,C,H,W] in [-1,1], or uint8) with the shared trainer.

        ``labels`` (a type with ``supports_labels`` and ``num_classes`` > 0 only): int [N], the
        class index in [0, num_classes) of each image. Resumes from the checkpoint in
        ``checkpoint_dir`` when there is one; writes a checkpoint (atomically) and a sample grid every
        ``config["checkpoint_every"]`` steps. Returns early, after a final
        checkpoint, when ``should_stop()`` turns true (it is called before every step).
        """
        from apps.ml.engine.trainer import Trainer

        return Trainer(self, Path(checkpoint_dir)).run(
            images, labels=labels, on_progress=on_progress, should_stop=should_stop
        )

    # ------------------------------------------------------------ hooks of the shared trainer
    # A type that trains through :meth:`train` implements training_parts, training_step and
    # grid_samples; the others have defaults.

    architecture_keys: ClassVar[tuple[str, ...]] = ("resolution", "channels")

    def architecture(self) -> dict:
        """What a checkpoint must match to be resumed (the config values that shape the weights)."""
        return {key: self.config.get(key) for key in self.architecture_keys}

    def training_data(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The training images, checked against the config, as float [-1, 1] on the device.

        A type that learns classes overrides this to take ``labels`` and return
        :class:`~.trainer.LabelledImages`; here labels are refused."""
        from apps.ml.engine.trainer import prepare_images

        if labels is not None:
            raise ValueError(f"{type(self).__name__} learns no classes: it trains on images without labels")
        return prepare_images(
            images, channels=self.config["channels"], resolution=self.config["resolution"], device=self.device
        )

    @classmethod
    def architecture_version_of(cls, config: dict) -> int:
        """The architecture version of the networks a saved ``config`` describes (1 unless the type versions them)."""
        return int(config.get("architecture_version") or 1)

    def weights_from_base(self, base) -> dict[str, dict[str, torch.Tensor]]:
        """The weights this model's networks start from when fine-tuned from ``base`` (an
        :class:`apps.ml.engine.transfer.Base` of the same type, resolution and channels, whose shape the config took
        over: ``build_config(base=...)``), by network name; a type with ``supports_fine_tuning`` implements it."""
        raise NotImplementedError(f"{type(self).__name__} cannot start from another generator")

    def _load_start(self, name: str, network: torch.nn.Module) -> None:
        """Load ``start_weights[name]`` (where fine-tuning set it) into a freshly built ``network``."""
        if self.start_weights and name in self.start_weights:
            network.load_state_dict(self.start_weights[name])

    def training_parts(self) -> TrainingParts:
        """Fresh networks, optimizers and EMA for a run (initialised from the config's seed)."""
        raise NotImplementedError(f"{type(self).__name__} does not train with the shared trainer")

    def training_step(
        self, parts: TrainingParts, data: torch.Tensor, step: int, rng: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """One optimizer step (0-based ``step``) drawing all randomness from ``rng``; returns its
        losses as detached 0-d tensors left on the device (the trainer reads them at reports only)."""
        raise NotImplementedError(f"{type(self).__name__} does not train with the shared trainer")

    def grid_samples(self, parts: TrainingParts, step: int) -> torch.Tensor:
        """The images of a checkpoint's sample grid, uint8 [N,C,H,W] (fixed noise: grids compare over time)."""
        raise NotImplementedError(f"{type(self).__name__} does not train with the shared trainer")

    def check_samples(self, parts: TrainingParts, step: int, samples: torch.Tensor) -> list[str]:
        """Warnings about a checkpoint's grid images (e.g. mode collapse); saved with the checkpoint."""
        return []

    def result_warnings(self, latest: list[str], earlier: list[str]) -> list[str]:
        """The warnings a finished run returns: by default those of its newest check."""
        return list(latest)

    @abstractmethod
    def finish_training(self, parts: TrainingParts, step: int) -> None:
        """Take the trained networks over for sampling and saving; called when training returns,
        after ``step`` steps in all."""

    @abstractmethod
    def sample(self, n: int, *, seed: int, steps: int | None = None, batch_size: int = 256) -> torch.Tensor:
        """``n`` images as uint8 [n,C,H,W] on the CPU; the same seed gives the same images."""

    def weights_state(self) -> dict[str, torch.Tensor]:
        """The tensors :meth:`save` writes as ``weights.safetensors`` (the sampling network's state); a model
        built on the "meta" device gives their names and shapes without allocating them (apps.ml.engine.portable)."""
        raise NotImplementedError(f"{type(self).__name__} does not say which tensors it saves")

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write ``weights.safetensors`` and ``config.json`` (no pickles)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, device: str | torch.device = "cpu") -> GeneratorType:
        """Read what :meth:`save` wrote."""
