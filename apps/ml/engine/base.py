"""The contract every generator type implements, and its limits.

A generator type is a class derived from :class:`GeneratorType`, registered with
:func:`apps.ml.engine.registry.register` (a class decorator, or one line in the registry for a built-in type).
The web form, the admin and the API read their choices from the registry, so adding a type needs no UI change.
Its name there is its ``kind`` (the generator's ``kind`` field, e.g. ``"dcgan"``).

**Training.** A type does not write a training loop: :meth:`GeneratorType.train` hands it to
:mod:`.trainer`, which owns the loop, progress reports, the cancel check, checkpoints, resuming,
reseeding, the EMA and sample grids. A type supplies its networks and optimizers
(:meth:`~GeneratorType.training_parts`), one training step, its architecture keys and a sample grid; see
the hooks below (what the trainer and a type hand each other lives in :mod:`.training`).

**Sampling.** :meth:`GeneratorType.sample` ``(n, *, seed, steps=None, batch_size=SAMPLING_BATCH_SIZE,
labels=None, guidance=None)``; every argument is described there, and its limits are the constants below
(the API, the web form, the generation service and the configs read them from here).

**Files.** :meth:`GeneratorType.save` writes ``weights.safetensors`` (:meth:`~GeneratorType.weights_state`)
and ``config.json``; :meth:`GeneratorType.load` builds the type from the config and hands the weights to
:meth:`~GeneratorType.load_weights`. A type only says which tensors it saves and where they go back.

Images travel as float32 tensors shaped ``[N, C, H, W]`` with values in
``[-1, 1]`` (training input) and as uint8 tensors ``[N, C, H, W]`` on the CPU
(sampling output). ``C`` is 1 (grayscale) or 3 (RGB).

A type with ``supports_labels`` learns classes: its config has ``num_classes`` (and ``classes``,
their names), it trains on ``train(images, labels=...)`` (int [N], one class index per image) and
samples with ``sample(n, ..., labels=..., guidance=...)``. The other types refuse labels and guidance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import torch

from apps.ml.engine.checkpoint import load_json, load_tensors, save_json_atomic, save_tensors_atomic
from apps.ml.engine.trainer import Trainer
from apps.ml.engine.training import ProgressCallback, StopCheck, TrainingData, TrainingParts, prepare_images

# train()'s reports and result belong to the contract: the apps take them from here (the train stage, tests).
from apps.ml.engine.training import TrainProgress as TrainProgress
from apps.ml.engine.training import TrainResult as TrainResult

PRESETS = ("quick", "standard", "long")
RESOLUTIONS = (32, 64, 128)

# ---------------------------------------------------------------- the limits of sampling
MAX_SAMPLING_STEPS = 1000  # steps: 1..MAX_SAMPLING_STEPS (the API, the form, the service and the configs)
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 20.0  # classifier-free guidance scales generation and configs accept
SAMPLING_BATCH_SIZE = 256  # images per network call when sample() is not told otherwise

# ---------------------------------------------------------------- the files of a saved model
WEIGHTS_FILE = "weights.safetensors"  # the sampling network (EMA weights), as every type saves it
CONFIG_FILE = "config.json"

# The labels sample() takes: one class for all images or one per image; class indices, or the config's class names.
SampleLabels = int | str | torch.Tensor | Sequence[int | str] | None


class TypedConfig(Protocol):
    """What the contract needs of a type's config class (:class:`apps.ml.engine.config.TrainingConfig`)."""

    @classmethod
    def from_preset(
        cls, *, resolution: int, channels: int, preset: str, image_count: int, device: str = "cpu"
    ) -> Any: ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any: ...


class BaseGenerator(Protocol):
    """A base generator's files, as fine-tuning reads them (:class:`apps.ml.engine.transfer.Base`)."""

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def weights(self) -> dict[str, torch.Tensor]: ...

    @property
    def discriminator(self) -> dict[str, torch.Tensor] | None: ...

    @property
    def notes(self) -> list[str]: ...


class GeneratorType(ABC):
    """A trainable image generator: build, train (resumable), sample, save, load."""

    kind: ClassVar[str]  # the generator type, as the registry and the generator's ``kind`` name it, e.g. "dcgan"
    label: ClassVar[str]  # human name, e.g. "DCGAN (fast, GAN)"
    description: ClassVar[str]  # one or two plain sentences for non-experts
    # The sampling steps generation uses when none are asked for; None: the type takes no steps.
    default_sampling_steps: ClassVar[int | None] = None
    # Whether generation takes "steps": follows from default_sampling_steps (set for each subclass; never set it).
    uses_sampling_steps: ClassVar[bool] = False
    small_set_preset: ClassVar[str] = "standard"  # the preset chosen for a set under 300 images when left out
    supports_labels: ClassVar[bool] = False  # True: learns classes (config num_classes; train/sample with labels)
    supports_fine_tuning: ClassVar[bool] = False  # True: can start from a base generator (weights_from_base)
    # What starting from a base does for this type and what it was measured to give, in plain words for the wizard
    # and the API ("" where the type cannot start from a base).
    fine_tuning: ClassVar[str] = ""
    # The newest architecture version of this type's networks that this code builds and loads (exported files
    # carry theirs: apps.ml.engine.portable refuses a newer one).
    newest_architecture_version: ClassVar[int] = 1

    # Fine-tuning (apps.ml.engine.transfer): the weights each network of ``training_parts`` starts from, by network name
    # (None: the seeded random initialisation). A resumed run loads its checkpoint over them.
    start_weights: dict[str, dict[str, torch.Tensor]] | None = None

    # The type's typed config (a :class:`~.config.TrainingConfig`); a type without one works with a dict.
    config_class: ClassVar[type[TypedConfig] | None] = None
    config: Any  # an instance of config_class, else a dict

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "uses_sampling_steps" in vars(cls):
            raise TypeError(
                f"{cls.__name__}: set default_sampling_steps (None: no steps); uses_sampling_steps follows from it"
            )
        cls.uses_sampling_steps = cls.default_sampling_steps is not None

    def __init__(self, config: Mapping[str, Any], device: str | torch.device = "cpu"):
        self.config = self.config_class.from_dict(config) if self.config_class else dict(config)
        self.device = torch.device(device)

    @classmethod
    def default_config(
        cls, *, resolution: int, channels: int, preset: str, image_count: int, device: str = "cpu"
    ) -> dict[str, Any]:
        """A JSON-serialisable config for this preset, dataset size and device.

        Must contain at least: resolution, channels, preset, total_steps,
        batch_size, checkpoint_every (and report_every and seed to train with the shared trainer).
        """
        if cls.config_class is None:
            raise NotImplementedError(f"{cls.__name__} has no config_class; define default_config")
        config = cls.config_class.from_preset(
            resolution=resolution, channels=channels, preset=preset, image_count=image_count, device=device
        )
        return dict(config.to_dict())

    def config_dict(self) -> dict[str, Any]:
        """The config as JSON (what ``config.json`` holds)."""
        return dict(self.config.to_dict()) if self.config_class else dict(self.config)

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
        return Trainer(self, Path(checkpoint_dir)).run(
            images, labels=labels, on_progress=on_progress, should_stop=should_stop
        )

    # ------------------------------------------------------------ hooks of the shared trainer
    # A type that trains through :meth:`train` implements training_parts, training_step and
    # grid_samples; the others have defaults.

    architecture_keys: ClassVar[tuple[str, ...]] = ("resolution", "channels")

    def architecture(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (the config values that shape the weights)."""
        return {key: self.config.get(key) for key in self.architecture_keys}

    def training_data(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> TrainingData:
        """The training images, checked against the config, as float [-1, 1] on the device.

        A type that learns classes overrides this to take ``labels`` and return
        :class:`~.training.LabelledImages`; here labels are refused."""
        if labels is not None:
            raise ValueError(f"{type(self).__name__} learns no classes: it trains on images without labels")
        return prepare_images(
            images, channels=self.config["channels"], resolution=self.config["resolution"], device=self.device
        )

    @classmethod
    def architecture_version_of(cls, config: Mapping[str, Any]) -> int:
        """The architecture version of the networks a saved ``config`` describes (1 unless the type versions them)."""
        return int(config.get("architecture_version") or 1)

    def weights_from_base(self, base: BaseGenerator) -> dict[str, dict[str, torch.Tensor]]:
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
        self, parts: TrainingParts, data: TrainingData, step: int, rng: torch.Generator
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

    # ------------------------------------------------------------ sampling

    @abstractmethod
    def sample(
        self,
        n: int,
        *,
        seed: int,
        steps: int | None = None,
        batch_size: int = SAMPLING_BATCH_SIZE,
        labels: SampleLabels = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """``n`` new images as uint8 [n, C, H, W] on the CPU.

        * ``seed``: all the randomness; the same arguments on the same device give the same images.
        * ``steps``: for a type with ``default_sampling_steps`` (``uses_sampling_steps``), the sampling steps,
          1..:data:`MAX_SAMPLING_STEPS` (None: the model's own default, else the type's). A type without steps
          ignores it; generation refuses it for them before it gets here.
        * ``batch_size``: at most this many images per network call (memory; :data:`SAMPLING_BATCH_SIZE`).
        * ``labels`` (a type with ``supports_labels``): the class of each image, one for all or one per image, as
          class indices or the config's class names; None: without a class (unconditional).
        * ``guidance`` (with ``labels``): the classifier-free guidance scale, :data:`MIN_GUIDANCE`..
          :data:`MAX_GUIDANCE` (1: the plain conditional model; None: the model's default).

        A type without ``supports_labels`` refuses ``labels`` and ``guidance`` (:meth:`refuse_labels`).
        """

    def refuse_labels(self, labels: SampleLabels, guidance: float | None) -> None:
        """For a type that learns no classes: a ValueError when ``sample`` is given labels or a guidance scale."""
        if labels is not None or guidance is not None:
            given = " and ".join(
                name for name, value in (("labels", labels), ("guidance", guidance)) if value is not None
            )
            raise ValueError(f"{self.kind} learns no classes: it samples without labels or guidance; leave out {given}")

    # ------------------------------------------------------------ files

    def weights_state(self) -> dict[str, torch.Tensor]:
        """The tensors :meth:`save` writes as ``weights.safetensors`` (the sampling network's state); a model
        built on the "meta" device gives their names and shapes without allocating them (apps.ml.engine.portable)."""
        raise NotImplementedError(f"{type(self).__name__} does not say which tensors it saves")

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Put the tensors :meth:`weights_state` gave (read back on the device) into the sampling network."""
        raise NotImplementedError(f"{type(self).__name__} does not say where its saved tensors go")

    def weights_metadata(self) -> dict[str, str] | None:
        """The text metadata saved in ``weights.safetensors`` (None: none)."""
        return None

    def extra_files(self) -> dict[str, dict[str, torch.Tensor]]:
        """Other tensor files :meth:`save` writes next to the weights, by file name (none by default)."""
        return {}

    def save(self, directory: Path) -> None:
        """Write ``weights.safetensors``, any :meth:`extra_files` and then ``config.json``, each atomically
        (safetensors and JSON: no pickles)."""
        directory = Path(directory)
        save_tensors_atomic(self.weights_state(), directory / WEIGHTS_FILE, metadata=self.weights_metadata())
        for name, tensors in self.extra_files().items():
            save_tensors_atomic(tensors, directory / name)
        save_json_atomic(self.config_dict(), directory / CONFIG_FILE)

    @classmethod
    def load(cls, directory: Path, device: str | torch.device = "cpu") -> Self:
        """Read what :meth:`save` wrote: the type built from ``config.json``, with the saved weights."""
        directory = Path(directory)
        model = cls(load_json(directory / CONFIG_FILE), device=device)
        model.load_weights(load_tensors(directory / WEIGHTS_FILE, device=model.device))
        return model
