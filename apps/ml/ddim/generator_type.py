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

Training runs in the shared :mod:`..trainer` (loop, reports, checkpoints, resume, reseeding, EMA,
grids); this module supplies the U-Net and its optimizer, one denoising step and the grid samples.
Files written by :meth:`DDIM.save`: ``weights.safetensors`` (EMA weights) and ``config.json``.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from torch import nn

from ..base import GeneratorType
from ..checkpoint import load_json, load_tensors, save_json_atomic, save_tensors_atomic
from ..ema import EMA
from ..registry import register
from ..trainer import TrainingParts
from .config import DEFAULT_SAMPLER, DEFAULT_SAMPLING_STEPS, DDIMConfig
from .sampler import SAMPLERS, run_sampler
from .schedule import CosineSchedule, add_noise, loss_weight, training_target
from .unet import build_unet

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


@register
class DDIM(GeneratorType):
    """A diffusion model (U-Net denoiser) sampled with DPM-Solver++(2M) or DDIM."""

    key = "ddim"
    label = "DDIM diffusion (best quality)"
    description = (
        "A diffusion model: learns to remove noise from your images, then turns pure noise into new images. "
        "Slower than a GAN but more reliable and more varied; more sampling steps give cleaner images."
    )
    uses_sampling_steps = True
    default_sampler = DEFAULT_SAMPLER  # see .config
    default_sampling_steps = DEFAULT_SAMPLING_STEPS
    # On 150 sandals, standard (about 850 epochs) gave 11.2 % near-copies, quick none (bench/README.md).
    small_set_preset = "quick"
    architecture_keys = ("resolution", "channels", "base_channels", "channel_mults", "num_res_blocks",
                         "attention_resolutions", "head_channels", "groups", "patch_size", "objective", "timesteps")

    config_class = DDIMConfig
    config: DDIMConfig

    # ------------------------------------------------------------------ setup

    def __init__(self, config: dict, device: str | torch.device = "cpu"):
        super().__init__(config, device)
        if self.config.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.config.sampler!r}; use one of {SAMPLERS}")
        self.schedule = CosineSchedule(self.config.timesteps, shift=self.config.schedule_shift)
        self._alpha_bar = self.schedule.alpha_bar_on(self.device)  # float32 [T] on the device
        self._use(self._build_model())
        self.step = 0  # optimizer steps taken (kept up to date while training)
        self.optimizer: torch.optim.Optimizer | None = None

    def _build_model(self) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # the same seed gives the same initial weights
            torch.manual_seed(self.config.seed)
            model = build_unet(self.config).to(self.device)
        return model.to(memory_format=torch.channels_last) if self._channels_last else model

    def _use(self, model: nn.Module, ema: EMA | None = None) -> None:
        """Train and sample with ``model`` and its average ``ema`` (a fresh one when left out)."""
        self.model = model
        self.ema = ema or EMA(model, self.config.ema_decay)
        self._loss_fn = None  # compiled for the previous model
        self._sample_denoiser = None

    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def _channels_last(self) -> bool:
        return self._cuda and self.config.channels_last

    def _autocast(self):
        """Training precision: bf16 autocast where ``amp_bf16`` is on (on a CPU only one with bf16 instructions)."""
        if self.config.amp_bf16 and (self._cuda or cpu_has_bf16()):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _sampling_autocast(self):
        """The network's precision while sampling: as training on CUDA; bf16 on a CPU that has it."""
        if self.device.type == "cpu" and self.config.cpu_sampling_bf16 and cpu_has_bf16():
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return self._autocast()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _new_optimizer(self) -> torch.optim.Optimizer:
        extra = {"fused": True} if self._cuda else {}
        return torch.optim.AdamW(self.model.parameters(), lr=self.config.learning_rate, betas=(0.9, 0.99),
                                 weight_decay=self.config.weight_decay, **extra)

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to ``final_lr_fraction`` of the peak at ``total_steps``."""
        peak = self.config.learning_rate
        warmup = self.config.warmup_steps
        if step < warmup:
            return peak * (step + 1) / warmup
        span = max(1, self.config.total_steps - warmup)
        progress = min(1.0, (step - warmup) / span)
        floor = self.config.final_lr_fraction
        return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    # ------------------------------------------------------------------ training

    def loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The weighted denoising loss (a 0-d float32 tensor) for images ``x0`` at steps ``t``."""
        alpha_bar = self._alpha_bar[t]
        x_t = add_noise(x0, noise, alpha_bar)
        with self._autocast():
            out = self.model(x_t, t.float())
        objective = self.config.objective
        target = training_target(x0, noise, alpha_bar, objective)
        per_image = (out.float() - target).pow(2).mean(dim=(1, 2, 3))
        weight = loss_weight(alpha_bar / (1 - alpha_bar), objective, self.config.min_snr_gamma,
                             plus_one=self.config.min_snr_plus_one)
        return (weight * per_image).mean()

    def _compiled_loss(self):
        if self._loss_fn is None:
            if self.config.compile:
                # mode: None (inductor's default) or e.g. "reduce-overhead" (CUDA graphs).
                self._loss_fn = torch.compile(self.loss, mode=self.config.compile_mode)
            else:
                self._loss_fn = self.loss
        return self._loss_fn

    # ------------------------------------------------------------------ hooks of the shared trainer

    def training_parts(self) -> TrainingParts:
        self._use(self._build_model())
        self.optimizer = self._new_optimizer()
        self.step = 0
        return TrainingParts(networks={"model": self.model}, optimizers={"model": self.optimizer}, ema=self.ema,
                             ema_of="model")

    def training_step(self, parts: TrainingParts, data: torch.Tensor, step: int,
                      rng: torch.Generator) -> dict[str, torch.Tensor]:
        """One optimizer step on a random batch; the loss stays on the device."""
        x0 = self._batch(data, rng)
        self.model.train()
        if self._channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        t = torch.randint(0, self.schedule.timesteps, (x0.shape[0],), device=x0.device, generator=rng)
        noise = torch.randn(x0.shape, device=x0.device, generator=rng)
        if self._channels_last:
            noise = noise.contiguous(memory_format=torch.channels_last)
        if self.config.compile and self.config.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier graph outputs may be reused
        loss = self._compiled_loss()(x0, t, noise)
        loss.backward()
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip, foreach=True)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate_at(step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step = step + 1
        return {"loss": loss.detach()}

    def grid_samples(self, parts: TrainingParts, step: int) -> torch.Tensor:
        """EMA samples from a fixed seed, with the grid's (fewer) sampling steps."""
        return self.sample(self.config.grid_images, seed=1234, steps=self.config.grid_steps,
                           batch_size=self.config.grid_images)

    def finish_training(self, parts: TrainingParts, step: int) -> None:
        self.step = step
        self.ema.model.eval()

    def _batch(self, data: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random batch (with replacement) from ``data`` on the device, half of it mirrored."""
        size = self.config.batch_size
        index = torch.randint(0, data.shape[0], (size,), device=data.device, generator=generator)
        batch = data[index]
        if self.config.hflip:
            flip = torch.rand(size, device=data.device, generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        return batch

    # ------------------------------------------------------------------ sampling

    def _denoiser(self):
        """The EMA network as ``denoise(x_t, t)``, in bf16 and compiled on CUDA when configured."""
        if self._sample_denoiser is None:
            model = self.ema.model
            if self.config.compile:
                model = torch.compile(model)

            def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                if self._channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with self._sampling_autocast():
                    return model(x, t)

            self._sample_denoiser = denoise
        return self._sample_denoiser

    @torch.no_grad()
    def sample_tensor(self, n: int, *, seed: int, steps: int | None = None, batch_size: int = 256,
                      eta: float = 0.0, sampler: str | None = None) -> torch.Tensor:
        """``n`` images as uint8 [n, C, H, W], left on the device (the benchmark's entry point)."""
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
            x = run_sampler(sampler, denoise, self.schedule, (b, c, r, r), steps=steps,
                            objective=self.config.objective, eta=eta, generator=generator, device=self.device)
            out[start : start + b] = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return out

    def sample(self, n: int, *, seed: int, steps: int | None = None, batch_size: int = 256,
               eta: float = 0.0, sampler: str | None = None) -> torch.Tensor:
        """``n`` images as uint8 [n, C, H, W] on the CPU.

        ``sampler``: ``"dpmpp2m"`` (DPM-Solver++(2M), deterministic) or ``"ddim"`` (``eta`` 0 is
        deterministic DDIM, ``eta`` > 0 stochastic); left out, ``"ddim"`` when ``eta`` > 0, else the
        config's ``sampler`` (generators saved before it existed get the type's default). ``steps``
        left out: the config's ``sampling_steps``. The same seed, ``n``, ``steps``, sampler,
        ``batch_size`` and device give the same images.
        """
        return self.sample_tensor(n, seed=seed, steps=steps, batch_size=batch_size, eta=eta, sampler=sampler).cpu()

    # ------------------------------------------------------------------ files

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        save_tensors_atomic(dict(self.ema.state_dict()), directory / WEIGHTS_FILE, metadata={"step": str(self.step)})
        save_json_atomic(self.config.to_dict(), directory / CONFIG_FILE)

    @classmethod
    def load(cls, directory: Path, device: str | torch.device = "cpu") -> "DDIM":
        directory = Path(directory)
        instance = cls(load_json(directory / CONFIG_FILE), device=device)
        weights = load_tensors(directory / WEIGHTS_FILE, device=instance.device)
        instance.model.load_state_dict(weights)
        instance.ema.load_state_dict(weights)
        return instance


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # private helpers: treat a torch without them as "no"
        return False

