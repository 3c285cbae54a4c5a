"""The DDIM diffusion generator type: config presets, training, sampling, files.

Training uses the DDPM objective (v-prediction by default, Min-SNR weighting)
on a cosine schedule, AdamW with warm-up and cosine decay, and EMA weights for
sampling. On CUDA it runs in bf16 autocast, channels-last, optionally through
``torch.compile``, and never reads a value back to the host inside the loop
(losses are summed on the device and read at progress reports only). All of a
run's randomness comes from its seed (the trainer reseeds every step from the seed and the step),
so the same seed trains the same weights, resumed or not.

Sampling uses DPM-Solver++(2M) by default (config ``sampler``; ``"ddim"`` is the
other), with the network in bf16 on a CPU that computes in bf16 natively.

Class-conditional (config ``num_classes`` > 0): the U-Net adds a class embedding to its time
embedding; ``train(images, labels=...)`` trains on a class index per image, replacing a share
``label_dropout`` of them by the "no label" token, and ``sample(n, labels=..., guidance=...)``
combines the conditional and unconditional predictions with classifier-free guidance (Ho &
Salimans 2022) in one network call on a double batch. Config ``augment_p`` > 0 turns on
non-leaking augmentation (:func:`..augment.conditioned_augment`): the network is told how each
training image was flipped, rotated and shifted, and sampling tells it "not augmented".

Training runs in the shared :mod:`apps.ml.engine.trainer` (loop, reports, checkpoints, resume, reseeding, EMA,
grids); this module supplies the U-Net and its optimizer, one denoising step and the grid samples; labels and
guidance are in :mod:`.conditioning`. The files are the contract's (:meth:`GeneratorType.save`):
``weights.safetensors`` (EMA weights, with the step count) and ``config.json``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from apps.ml.ddim.conditioning import ClassIndex, Denoiser, drop_labels, guided, sampling_labels
from apps.ml.ddim.config import (
    ARCHITECTURE_VERSION,
    DEFAULT_SAMPLER,
    DEFAULT_SAMPLING_STEPS,
    DDIMConfig,
    fine_tuning_recipe,
)
from apps.ml.ddim.objective import learning_rate_at, new_optimizer, random_batch, weighted_loss
from apps.ml.ddim.sampler import SAMPLERS, run_sampler
from apps.ml.ddim.schedule import CosineSchedule, add_noise
from apps.ml.ddim.unet import build_unet
from apps.ml.engine.augment import AUGMENT_DIM, conditioned_augment
from apps.ml.engine.base import MIN_GUIDANCE, SAMPLING_BATCH_SIZE, BaseGenerator, GeneratorType, SampleLabels
from apps.ml.engine.config import capitalised
from apps.ml.engine.device import cpu_has_bf16
from apps.ml.engine.ema import EMA
from apps.ml.engine.training import (
    LabelledImages,
    TrainingData,
    TrainingParts,
    images_and_labels,
    prepare_images,
    prepare_labels,
)
from apps.ml.engine.transfer import remap_class_rows

LossFunction = Callable[..., torch.Tensor]


class DDIM(GeneratorType):
    """A diffusion model (U-Net denoiser) sampled with DPM-Solver++(2M) or DDIM."""

    kind = "ddim"
    label = "DDIM diffusion (best quality)"
    description = (
        "A diffusion model: learns to remove noise from your images, then turns pure noise into new images. "
        "Slower than a GAN but more reliable and more varied; more sampling steps give cleaner images."
    )
    supports_labels = True  # config num_classes > 0: class-conditional, sampled with guidance
    supports_fine_tuning = True  # weights_from_base: the base's EMA U-Net, class rows mapped by name
    fine_tuning = (
        f"{capitalised(fine_tuning_recipe())}. Measured on 150 photos: about "
        "as realistic as the quick preset from scratch, in a third of the time (bench/README.md)."
    )
    newest_architecture_version = ARCHITECTURE_VERSION
    default_sampler = DEFAULT_SAMPLER  # see .config
    default_sampling_steps = DEFAULT_SAMPLING_STEPS  # generation takes steps
    # On 150 sandals, standard (about 850 epochs) gave 11.2 % near-copies, quick none (bench/README.md).
    small_set_preset = "quick"
    architecture_keys = (
        "resolution",
        "channels",
        "base_channels",
        "channel_mults",
        "num_res_blocks",
        "attention_resolutions",
        "head_channels",
        "groups",
        "patch_size",
        "objective",
        "timesteps",
    )

    config_class = DDIMConfig
    config: DDIMConfig

    # ------------------------------------------------------------------ setup

    def __init__(self, config: Mapping[str, Any], device: str | torch.device = "cpu"):
        super().__init__(config, device)
        if self.config.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.config.sampler!r}; use one of {SAMPLERS}")
        if self.config.num_classes < 0:
            raise ValueError("num_classes must be >= 0")
        if self.config.classes and len(self.config.classes) != self.config.num_classes:
            raise ValueError(
                f"classes names {len(self.config.classes)} classes but num_classes is {self.config.num_classes}"
            )
        self.schedule = CosineSchedule(self.config.timesteps, shift=self.config.schedule_shift)
        self._alpha_bar = self.schedule.alpha_bar_on(self.device)  # float32 [T] on the device
        self._use(self._build_model())
        self.step = 0  # optimizer steps taken (kept up to date while training)
        self._class_index: ClassIndex | None = None  # the class-balanced draws of the labels trained on

    def _build_model(self) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # the same seed gives the same initial weights
            torch.manual_seed(self.config.seed)
            model = build_unet(self.config).to(self.device)
        return model.to(memory_format=torch.channels_last) if self._channels_last else model

    def _use(self, model: nn.Module, ema: EMA | None = None) -> None:
        """Train and sample with ``model`` and its average ``ema`` (a fresh one when left out)."""
        self.model = model
        self.ema = ema or EMA(model, self.config.ema_decay)
        self._loss_fn: LossFunction | None = None  # compiled for the previous model
        self._sample_denoiser: Denoiser | None = None

    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def _channels_last(self) -> bool:
        return self._cuda and self.config.channels_last

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        """Training precision: bf16 autocast where ``amp_bf16`` is on (on a CPU only one with bf16 instructions)."""
        if self.config.amp_bf16 and (self._cuda or cpu_has_bf16()):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _sampling_autocast(self) -> contextlib.AbstractContextManager[object]:
        """The network's precision while sampling: as training on CUDA; bf16 on a CPU that has it."""
        if self.device.type == "cpu" and self.config.cpu_sampling_bf16 and cpu_has_bf16():
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return self._autocast()

    @property
    def num_classes(self) -> int:
        """0 for an unconditional model, else the number of classes it learns."""
        return self.config.num_classes

    def architecture(self) -> dict[str, Any]:
        """The architecture keys, plus the conditioning layers where there are any (an unconditional
        model's architecture, and so its checkpoints' resume check, is what it always was)."""
        architecture = super().architecture()
        if self.config.num_classes:
            architecture["num_classes"] = self.config.num_classes
        if self.config.augment_p > 0:
            architecture["augment_dim"] = AUGMENT_DIM
        if self.config.architecture_version > 1:
            architecture["architecture_version"] = self.config.architecture_version
        return architecture

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ training

    def loss(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        labels: torch.Tensor | None = None,
        augment: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The weighted denoising loss (a 0-d float32 tensor) for images ``x0`` at steps ``t``
        (with their class ``labels`` and augmentation vectors ``augment`` where the model takes them)."""
        alpha_bar = self._alpha_bar[t]
        with self._autocast():
            prediction = self.model(add_noise(x0, noise, alpha_bar), t.float(), labels, augment)
        return weighted_loss(prediction, x0, noise, alpha_bar, self.config)

    def _compiled_loss(self) -> LossFunction:
        if self._loss_fn is None:
            if self.config.compile:
                # mode: None (inductor's default) or e.g. "reduce-overhead" (CUDA graphs).
                self._loss_fn = torch.compile(self.loss, mode=self.config.compile_mode)
            else:
                self._loss_fn = self.loss
        return self._loss_fn

    # ------------------------------------------------------------------ hooks of the shared trainer

    def training_parts(self) -> TrainingParts:
        model = self._build_model()
        self._load_start("model", model)  # fine-tuning: the base's weights (the EMA starts from them too)
        self._use(model)
        self.step = 0
        optimizers = {"model": new_optimizer(self.model, self.config, fused=self._cuda)}
        return TrainingParts(networks={"model": self.model}, optimizers=optimizers, ema=self.ema, ema_of="model")

    def training_data(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> TrainingData:
        """The images as float [-1, 1] on the device; with ``num_classes`` > 0 they need their labels
        and come back as :class:`~apps.ml.engine.training.LabelledImages`."""
        data = prepare_images(
            images, channels=self.config.channels, resolution=self.config.resolution, device=self.device
        )
        if not self.config.num_classes:
            if labels is not None:
                raise ValueError(
                    "this DDIM config is unconditional (num_classes 0): it trains without labels; "
                    "set num_classes (apps.ml.engine.config.build_config(classes=...)) to learn classes"
                )
            return data
        if labels is None:
            raise ValueError(f"this DDIM config learns {self.config.num_classes} classes: train it with labels")
        return LabelledImages(
            data, prepare_labels(labels, count=data.shape[0], num_classes=self.config.num_classes, device=self.device)
        )

    def training_step(
        self, parts: TrainingParts, data: TrainingData, step: int, rng: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """One optimizer step on a random batch; the loss stays on the device.

        ``data``: the images, or :class:`~apps.ml.engine.training.LabelledImages` for a class-conditional model."""
        x0, labels = self._batch(data, rng)
        augment = None
        if self.config.augment_p > 0:  # before channels-last: the gathers return a contiguous batch
            x0, augment = conditioned_augment(x0, self.config.augment_p, rng, flip=self.config.augment_flip)
        if labels is not None and self.config.label_dropout > 0:
            labels = drop_labels(labels, self.config.label_dropout, no_label=self.config.num_classes, generator=rng)
        self.model.train()
        if self._channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        t = torch.randint(0, self.schedule.timesteps, (x0.shape[0],), device=x0.device, generator=rng)
        noise = torch.randn(x0.shape, device=x0.device, generator=rng)
        if self._channels_last:
            noise = noise.contiguous(memory_format=torch.channels_last)
        if self.config.compile and self.config.compile_mode == "reduce-overhead":
            # A new iteration: earlier graph outputs may be reused.
            torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]  # torch leaves it untyped
        loss = self._compiled_loss()(x0, t, noise, labels, augment)
        torch.autograd.backward(loss)
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip, foreach=True)
        optimizer = parts.optimizers["model"]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(self.config, step)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.step = step + 1
        return {"loss": loss.detach()}

    def grid_samples(self, parts: TrainingParts, step: int) -> torch.Tensor:
        """EMA samples from a fixed seed, with the grid's (fewer) sampling steps; a conditional
        model's grid runs through the classes (0, 1, 2, ..., 0, 1, ...) at the config's guidance."""
        n = self.config.grid_images
        labels = torch.arange(n) % self.config.num_classes if self.config.num_classes else None
        return self.sample(n, seed=1234, steps=self.config.grid_steps, batch_size=n, labels=labels)

    def finish_training(self, parts: TrainingParts, step: int) -> None:
        self.step = step
        self.ema.model.eval()

    def weights_from_base(self, base: BaseGenerator) -> dict[str, dict[str, torch.Tensor]]:
        """The base's EMA U-Net for this config's classes (:func:`apps.ml.engine.transfer.remap_class_rows`: rows
        mapped by class name; new classes start from the "no label" row). The raw network and its EMA both start
        there."""
        if self.config.num_classes and not self.config.classes:
            raise ValueError("a conditional model fine-tuned from a base needs its class names (config classes)")
        state, rows = remap_class_rows(
            base.weights,
            base_classes=list(base.config.get("classes") or []),
            base_num_classes=int(base.config.get("num_classes") or 0),
            classes=list(self.config.classes) if self.config.num_classes else [],
        )
        base.notes.append(
            f"classes kept from the base: {', '.join(rows['kept']) or 'none'}; new: {', '.join(rows['new']) or 'none'}"
        )
        return {"model": state}

    def _batch(self, data: TrainingData, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A random batch (with replacement) from ``data`` on the device, half of it mirrored where
        ``hflip`` says the photos look alike mirrored, and its labels (None for unlabelled data)."""
        images, labels = images_and_labels(data)
        if labels is None or not self.config.class_balanced:
            return random_batch(images, labels, self.config, generator)
        if self._class_index is None or self._class_index.labels is not labels:  # worked out once per training set
            self._class_index = ClassIndex(labels)
        return random_batch(images, labels, self.config, generator, self._class_index)

    # ------------------------------------------------------------------ sampling

    def _denoiser(self) -> Denoiser:
        """The EMA network as ``denoise(x_t, t, labels=None)``, in bf16 and compiled on CUDA when
        configured. No augmentation vector is passed: sampling is always "not augmented" (zeros)."""
        if self._sample_denoiser is None:
            model: Callable[..., torch.Tensor] = (
                torch.compile(self.ema.model) if self.config.compile else self.ema.model
            )

            def denoise(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
                if self._channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with self._sampling_autocast():
                    return model(x, t) if labels is None else model(x, t, labels)

            self._sample_denoiser = denoise
        return self._sample_denoiser

    @torch.no_grad()
    def sample_tensor(
        self,
        n: int,
        *,
        seed: int,
        steps: int | None = None,
        batch_size: int = SAMPLING_BATCH_SIZE,
        eta: float = 0.0,
        sampler: str | None = None,
        labels: SampleLabels = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """``n`` images as uint8 [n, C, H, W], left on the device (the benchmark's entry point)."""
        indices = sampling_labels(
            labels, n, num_classes=self.config.num_classes, classes=self.config.classes, device=self.device
        )
        scale = self.config.guidance_scale if guidance is None else float(guidance)
        if scale < MIN_GUIDANCE:
            raise ValueError(f"guidance must be >= {MIN_GUIDANCE:g}, got {scale}")
        steps = steps or self.config.sampling_steps or self.default_sampling_steps
        if sampler is None:  # eta > 0 is stochastic DDIM; otherwise the config's (or the type's) sampler
            sampler = "ddim" if eta > 0 else self.config.sampler or self.default_sampler
        c, r = self.config.channels, self.config.resolution
        self.ema.model.eval()
        generator = torch.Generator(self.device).manual_seed(seed)
        denoise = self._denoiser()
        out = torch.empty((n, c, r, r), dtype=torch.uint8, device=self.device)
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            batch_labels = None if indices is None else indices[start : start + b]
            batch_denoise = guided(denoise, batch_labels, scale, no_label=self.config.num_classes)
            x = run_sampler(
                sampler,
                batch_denoise,
                self.schedule,
                (b, c, r, r),
                steps=steps,
                objective=self.config.objective,
                eta=eta,
                generator=generator,
                device=self.device,
            )
            out[start : start + b] = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return out

    def sample(
        self,
        n: int,
        *,
        seed: int,
        steps: int | None = None,
        batch_size: int = SAMPLING_BATCH_SIZE,
        eta: float = 0.0,
        sampler: str | None = None,
        labels: SampleLabels = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """``n`` images as uint8 [n, C, H, W] on the CPU (the contract: :meth:`GeneratorType.sample`).

        A class-conditional model (``num_classes`` > 0) draws image ``i`` of class ``labels[i]`` with guidance
        ``guidance`` (left out: the config's ``guidance_scale``; 0 is the unconditional model; values other than
        0 and 1 cost one network call on a double batch per step); without labels, the "no label" token. An
        unconditional model refuses labels.

        ``sampler``: ``"dpmpp2m"`` (DPM-Solver++(2M), deterministic) or ``"ddim"`` (``eta`` 0 is
        deterministic DDIM, ``eta`` > 0 stochastic); left out, ``"ddim"`` when ``eta`` > 0, else the
        config's ``sampler`` (generators saved before it existed get the type's default). ``steps``
        left out: the config's ``sampling_steps``. The same seed, ``n``, ``steps``, sampler,
        ``batch_size`` and device give the same images.
        """
        return self.sample_tensor(
            n, seed=seed, steps=steps, batch_size=batch_size, eta=eta, sampler=sampler, labels=labels, guidance=guidance
        ).cpu()

    # ------------------------------------------------------------------ files

    def weights_state(self) -> dict[str, torch.Tensor]:
        return dict(self.ema.state_dict())

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(weights)
        self.ema.load_state_dict(weights)

    def weights_metadata(self) -> dict[str, str]:
        return {"step": str(self.step)}
