"""The DDIM diffusion generator type: config presets, training, sampling, files.

Training uses the DDPM objective (v-prediction by default, Min-SNR weighting)
on a cosine schedule, AdamW with warm-up and cosine decay, and EMA weights for
sampling. On CUDA it runs in bf16 autocast, channels-last, optionally through
``torch.compile``, and never reads a value back to the host inside the loop
(losses are summed on the device and read at progress reports only). All of a
run's randomness comes from its seed, so the same seed trains the same weights.

Sampling uses DPM-Solver++(2M) by default (config ``sampler``; ``"ddim"`` is the
other), with the network in bf16 on a CPU that computes in bf16 natively.

Files in ``checkpoint_dir`` while training:
    checkpoint.safetensors  model, EMA and optimizer tensors; the step in its metadata
    checkpoint.json         the config and step, for people and tools
    samples_<step>.png      a grid of EMA samples at each checkpoint
Files written by :meth:`DDIM.save`: ``weights.safetensors`` (EMA weights) and ``config.json``.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ..base import PRESETS, GeneratorType, ProgressCallback, StopCheck, TrainProgress, TrainResult
from ..checkpoint import flatten_state, load_json, load_tensors, save_json_atomic, save_tensors_atomic
from ..images import save_grid
from ..registry import register
from .ema import EMA
from .sampler import SAMPLERS, run_sampler
from .schedule import CosineSchedule, add_noise, loss_weight, training_target
from .unet import build_unet

CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"

# Training length per preset, in optimizer steps, for about 150 images.
# CPU: quick is about 12 CPU-minutes on one core (recognisable sandals at 32 px, see bench/README.md);
# GPU: minutes on one H100.
CPU_STEPS = {"quick": 1500, "standard": 4000, "long": 10000}
GPU_STEPS = {"quick": 4000, "standard": 12000, "long": 30000}

# Below this many images the small recipe (model, batch, learning rate, steps) is used on every
# device. The DDPM-sized GPU model memorises small sets: on an H200, 2,000 steps of 128 on 150
# sandals (about 1,700 epochs) gave 39.9 % near-copies, where the small recipe (1,500 steps of 32,
# 320 epochs) gave none on the CPU. A GPU still runs it in bf16, channels-last and compiled.
SMALL_DATASET = 300


def _dataset_factor(image_count: int) -> float:
    """More images carry more to learn (and copy less): train longer on them."""
    if image_count < 300:
        return 1.0
    if image_count < 700:
        return 1.5
    return 2.0


def _model_shape(resolution: int, on_gpu: bool) -> dict:
    """U-Net width and depth for a resolution: small and patched on a CPU, DDPM-sized on a GPU."""
    if on_gpu:
        mults = {32: [1, 2, 2, 2], 64: [1, 2, 3, 4], 128: [1, 1, 2, 3, 4]}.get(resolution, [1, 2, 2])
        return dict(base_channels=128, channel_mults=mults, num_res_blocks=2, attention_resolutions=[16, 8],
                    patch_size=1, head_channels=64)
    # 2x2 patches: a 32 px image is a 16x16 map inside the network.
    mults = {32: [1, 2, 2], 64: [1, 2, 2, 2], 128: [1, 1, 2, 2, 2]}.get(resolution, [1, 2])
    return dict(base_channels=48, channel_mults=mults, num_res_blocks=1, attention_resolutions=[8, 4],
                patch_size=2 if resolution >= 16 else 1, head_channels=48)


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
    # DPM-Solver++(2M) at 12 steps matched DDIM at 50 steps in held-out KID on 150 sandals (32 px, two
    # training seeds; at 64 px 10 steps already did); 15-20 steps beat DDIM 50. See bench/README.md.
    default_sampler = "dpmpp2m"
    default_sampling_steps = 12
    # On 150 sandals, standard (about 850 epochs) gave 11.2 % near-copies, quick none (bench/README.md).
    small_set_preset = "quick"

    # ------------------------------------------------------------------ config

    @classmethod
    def default_config(
        cls, *, resolution: int, channels: int, preset: str, image_count: int, device: str = "cpu"
    ) -> dict:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {PRESETS}")
        on_gpu = torch.device(device).type == "cuda"
        big = on_gpu and image_count >= SMALL_DATASET  # the DDPM-sized recipe
        steps = (GPU_STEPS if big else CPU_STEPS)[preset]
        total_steps = int(round(steps * _dataset_factor(image_count) / 100)) * 100
        return {
            "resolution": resolution,
            "channels": channels,
            "preset": preset,
            "image_count": image_count,
            **_model_shape(resolution, big),
            "dropout": 0.1 if image_count < 500 else 0.05,
            "timesteps": 1000,
            "schedule_shift": 32 / resolution if resolution > 32 else 1.0,
            "objective": "v",
            "min_snr_gamma": 5.0,
            # True: min(snr + 1, gamma) / (snr + 1) for v (full weight at high noise); measured worse on
            # held-out KID than the paper's min(snr, gamma) / (snr + 1) (schedule.loss_weight).
            "min_snr_plus_one": False,
            "total_steps": total_steps,
            "batch_size": (128 if resolution <= 64 else 64) if big else 32,
            "learning_rate": 2e-4 if big else 1e-3,
            "warmup_steps": 200 if big else 100,
            "final_lr_fraction": 0.1,  # cosine decay to this share of the peak
            "weight_decay": 0.01,
            "grad_clip": 1.0,
            "ema_decay": 0.999 if big else 0.995,
            "hflip": True,
            "checkpoint_every": max(100, total_steps // 10),
            "report_every": 50 if on_gpu else 10,
            "grid_images": 64,
            "grid_steps": cls.default_sampling_steps,
            "sampler": cls.default_sampler,  # "dpmpp2m" (DPM-Solver++(2M)) or "ddim"
            "sampling_steps": cls.default_sampling_steps,
            "amp_bf16": on_gpu,
            # Sampling on a CPU with bf16 instructions (AVX512-BF16 or AMX) runs the U-Net in bf16
            # autocast (the sampler's update stays float32): 1.6-2x faster at equal KID (bench/README.md).
            "cpu_sampling_bf16": True,
            "channels_last": on_gpu,
            "compile": on_gpu,
            "compile_mode": None,
            "seed": 0,
        }

    # ------------------------------------------------------------------ setup

    def __init__(self, config: dict, device: str | torch.device = "cpu"):
        super().__init__(config, device)
        if config.get("sampler", self.default_sampler) not in SAMPLERS:
            raise ValueError(f"unknown sampler {config['sampler']!r}; use one of {SAMPLERS}")
        self.schedule = CosineSchedule(config["timesteps"], shift=config.get("schedule_shift", 1.0))
        with torch.random.fork_rng(devices=[]):  # the same seed gives the same initial weights
            torch.manual_seed(int(config.get("seed", 0)))
            self.model = build_unet(config).to(self.device)
        if self._channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = EMA(self.model, config["ema_decay"])
        self._alpha_bar = self.schedule.alpha_bar_on(self.device)  # float32 [T] on the device
        self.step = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self._loss_fn = None
        self._sample_denoiser = None

    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def _channels_last(self) -> bool:
        return self._cuda and self.config.get("channels_last", False)

    def _autocast(self):
        if self._cuda and self.config.get("amp_bf16", False):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _sampling_autocast(self):
        """The network's precision while sampling: as training on CUDA; bf16 on a CPU that has it."""
        if self.device.type == "cpu" and self.config.get("cpu_sampling_bf16", True) and cpu_has_bf16():
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return self._autocast()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _ensure_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            extra = {"fused": True} if self._cuda else {}
            self.optimizer = torch.optim.AdamW(
                self.model.parameters(),
                lr=self.config["learning_rate"],
                betas=(0.9, 0.99),
                weight_decay=self.config.get("weight_decay", 0.0),
                **extra,
            )
        return self.optimizer

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to ``final_lr_fraction`` of the peak at ``total_steps``."""
        peak = self.config["learning_rate"]
        warmup = self.config.get("warmup_steps", 0)
        if step < warmup:
            return peak * (step + 1) / warmup
        span = max(1, self.config["total_steps"] - warmup)
        progress = min(1.0, (step - warmup) / span)
        floor = self.config.get("final_lr_fraction", 0.1)
        return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    # ------------------------------------------------------------------ training

    def loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The weighted denoising loss (a 0-d float32 tensor) for images ``x0`` at steps ``t``."""
        alpha_bar = self._alpha_bar[t]
        x_t = add_noise(x0, noise, alpha_bar)
        with self._autocast():
            out = self.model(x_t, t.float())
        objective = self.config["objective"]
        target = training_target(x0, noise, alpha_bar, objective)
        per_image = (out.float() - target).pow(2).mean(dim=(1, 2, 3))
        weight = loss_weight(alpha_bar / (1 - alpha_bar), objective, self.config.get("min_snr_gamma"),
                             plus_one=self.config.get("min_snr_plus_one", False))
        return (weight * per_image).mean()

    def _compiled_loss(self):
        if self._loss_fn is None:
            if self.config.get("compile", False):
                # mode: None (inductor's default) or e.g. "reduce-overhead" (CUDA graphs).
                self._loss_fn = torch.compile(self.loss, mode=self.config.get("compile_mode"))
            else:
                self._loss_fn = self.loss
        return self._loss_fn

    def train_step(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One optimizer step on the batch ``x0`` (on the device); returns the loss, still on the device."""
        optimizer = self._ensure_optimizer()
        self.model.train()
        if self._channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        t = torch.randint(0, self.schedule.timesteps, (x0.shape[0],), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator)
        if self._channels_last:
            noise = noise.contiguous(memory_format=torch.channels_last)
        if self.config.get("compile") and self.config.get("compile_mode") == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier graph outputs may be reused
        loss = self._compiled_loss()(x0, t, noise)
        loss.backward()
        if self.config.get("grad_clip"):
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config["grad_clip"], foreach=True)
        lr = self.learning_rate_at(self.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model, self.step)
        self.step += 1
        return loss.detach()

    def _batch(self, data: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random batch (with replacement) from ``data`` on the device, half of it mirrored."""
        size = self.config["batch_size"]
        index = torch.randint(0, data.shape[0], (size,), device=data.device, generator=generator)
        batch = data[index]
        if self.config.get("hflip", False):
            flip = torch.rand(size, device=data.device, generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        return batch

    def train(
        self,
        images: torch.Tensor,
        *,
        checkpoint_dir: Path,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> TrainResult:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._check_images(images)
        self._ensure_optimizer()
        if (checkpoint_dir / CHECKPOINT_FILE).exists():
            self.load_checkpoint(checkpoint_dir)
        total = self.config["total_steps"]
        report_every = self.config.get("report_every", 10)
        every = self.config["checkpoint_every"]
        data = images.to(self.device, torch.float32)
        # All randomness (batches, noise, steps and dropout) is reseeded from the seed and the step at the
        # start and after every checkpoint, so a run is the same for a seed, resumed or not. The global
        # RNG (dropout) is forked: the caller's random state is left as it was.
        fork_devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self._cuda else []
        with torch.random.fork_rng(devices=fork_devices):
            return self._train_loop(data, checkpoint_dir, on_progress, should_stop, total, report_every, every)

    def _reseed(self) -> torch.Generator:
        """A generator for batches and noise, and the global RNG (dropout), seeded from the seed and step."""
        seed = int(self.config.get("seed", 0)) * 1_000_003 + self.step
        torch.manual_seed(seed + 500_009)
        return torch.Generator(self.device).manual_seed(seed)

    def _train_loop(self, data, checkpoint_dir, on_progress, should_stop, total, report_every, every) -> TrainResult:
        generator = self._reseed()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        losses_since = 0
        last_losses: dict[str, float] = {}
        stopped = False

        while self.step < total:
            loss_sum += self.train_step(self._batch(data, generator), generator)
            losses_since += 1
            step = self.step
            checkpoint_now = step % every == 0 or step == total
            if step % report_every and not checkpoint_now:
                continue
            last_losses = {"loss": float(loss_sum) / losses_since}  # the only host sync
            loss_sum.zero_()
            losses_since = 0
            stopped = bool(should_stop and should_stop())
            grid = None
            if checkpoint_now or stopped:
                grid = self.save_checkpoint(checkpoint_dir)
                generator = self._reseed()  # a run resumed from this checkpoint draws the same from here
            if on_progress:
                on_progress(TrainProgress(step=step, total_steps=total, losses=dict(last_losses),
                                          sample_grid=grid, checkpointed=grid is not None))
            if stopped:
                break
        return TrainResult(steps=self.step, seconds=time.perf_counter() - started,
                           final_losses=last_losses, stopped_early=stopped)

    def _check_images(self, images: torch.Tensor) -> None:
        expected = (self.config["channels"], self.config["resolution"], self.config["resolution"])
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected images [N, {expected[0]}, {expected[1]}, {expected[2]}], got {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError("no training images")

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, checkpoint_dir: Path) -> Path:
        """Write model, EMA and optimizer state (atomically) and a sample grid; returns the grid's path."""
        checkpoint_dir = Path(checkpoint_dir)
        tensors = {
            **flatten_state("model", self.model.state_dict()),
            **flatten_state("ema", self.ema.state_dict()),
        }
        if self.optimizer is not None:
            tensors.update(flatten_state("optim", {"state": self.optimizer.state_dict()["state"]}))
        save_tensors_atomic(tensors, checkpoint_dir / CHECKPOINT_FILE, metadata={"step": str(self.step)})
        save_json_atomic({"step": self.step, "config": self.config}, checkpoint_dir / CHECKPOINT_JSON)
        grid = self.sample(self.config.get("grid_images", 64), seed=1234, steps=self.config.get("grid_steps", 25),
                           batch_size=self.config.get("grid_images", 64))
        return save_grid(grid, checkpoint_dir / f"samples_{self.step:07d}.png")

    def load_checkpoint(self, checkpoint_dir: Path) -> int:
        """Restore what :meth:`save_checkpoint` wrote; returns the step it was taken at."""
        path = Path(checkpoint_dir) / CHECKPOINT_FILE
        flat = load_tensors(path, device=self.device)
        with safe_open(str(path), framework="pt") as fh:
            step = int(fh.metadata()["step"])
        self.model.load_state_dict(_section(flat, "model"))
        self.ema.load_state_dict(_section(flat, "ema"))
        optim_flat = _section(flat, "optim.state")
        if optim_flat:
            optimizer = self._ensure_optimizer()
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in optim_flat.items():
                index, name = key.split(".", 1)
                if name == "step":  # the optimizer keeps its step count as float32
                    value = value.to(torch.float32)
                    if not self._cuda:
                        value = value.cpu()
                state.setdefault(int(index), {})[name] = value
            optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
        self.step = step
        return step

    # ------------------------------------------------------------------ sampling

    def _denoiser(self):
        """The EMA network as ``denoise(x_t, t)``, in bf16 and compiled on CUDA when configured."""
        if self._sample_denoiser is None:
            model = self.ema.model
            if self.config.get("compile", False):
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
        steps = steps or self.config.get("sampling_steps") or self.default_sampling_steps
        if sampler is None:  # eta > 0 is stochastic DDIM; otherwise the config's (or the type's) sampler
            sampler = "ddim" if eta > 0 else self.config.get("sampler") or self.default_sampler
        c, r = self.config["channels"], self.config["resolution"]
        self.ema.model.eval()
        generator = torch.Generator(self.device).manual_seed(seed)
        denoise = self._denoiser()
        out = torch.empty((n, c, r, r), dtype=torch.uint8, device=self.device)
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            x = run_sampler(sampler, denoise, self.schedule, (b, c, r, r), steps=steps,
                            objective=self.config["objective"], eta=eta, generator=generator, device=self.device)
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
        save_json_atomic(self.config, directory / CONFIG_FILE)

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


def _section(flat: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix.`` with the prefix removed."""
    cut = len(prefix) + 1
    return {key[cut:]: value for key, value in flat.items() if key.startswith(prefix + ".")}
