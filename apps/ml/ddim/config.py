"""The DDIM diffusion model's settings and its recipe per preset, resolution, dataset size and device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from apps.ml.ddim.sampler import SAMPLERS
from apps.ml.engine.base import MAX_GUIDANCE, MAX_SAMPLING_STEPS, MIN_GUIDANCE, PRESETS
from apps.ml.engine.config import TrainingConfig, recipe_words, setting

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

# DPM-Solver++(2M) at 12 steps matched DDIM at 50 steps in held-out KID on 150 sandals (32 px, two
# training seeds; at 64 px 10 steps already did); 15-20 steps beat DDIM 50. See bench/README.md.
DEFAULT_SAMPLER = "dpmpp2m"
DEFAULT_SAMPLING_STEPS = 12
# Classifier-free guidance scale: prediction = uncond + scale * (cond - uncond); 1 is the plain
# conditional model, larger trades variety for class fidelity. 5: in bench/balance.py (Fashion-MNIST,
# three classes cut to 150) the generated images' credit to a classifier rose with the scale (1: -1.34,
# 2: -0.98, 3: -0.38, 5: +0.30, 8: +0.48 points; every interval holds 0; no near-copies at 5 or 8);
# 5 is the middle of the positive ones (bench/README.md).
DEFAULT_GUIDANCE = 5.0
# New configs' U-Net (see DDIMConfig.architecture_version).
ARCHITECTURE_VERSION = 2
# Non-leaking augmentation for new configs: each of flip, quarter turn and shift with this probability
# (EDM used 0.12 on CIFAR-10); see bench/README.md, "Faithful images". The longer presets get more: on 150
# sandals with exact copies, standard (4,000 steps) made 12.0 % near-copies at 0.15 and 0.4 % at 0.3, with
# realism as good or better (bench/README.md, "The cause: the augment stage blurred its copies").
AUGMENT_P = 0.15
AUGMENT_P_LONGER = 0.3  # the standard and long presets
# Fine-tuning from a base generator (DDIMConfig.for_base): a third of the preset's steps at the preset's peak
# learning rate, after a warm-up of 5 % of those steps (at least 1), so that fresh Adam moments do not jolt
# the base's weights. Measured (bench/transfer.py, 150 sandals from a base of the nine other classes, 2 seeds):
# at a fifth of the learning rate the 500-step child missed the 1,500-step quick preset (precision -0.069
# [-0.107, -0.031]); at the full rate it halves its KID (15.6 against 30.3) at precision -0.016 [-0.067, +0.035].
FINE_TUNE_STEPS = 1 / 3
FINE_TUNE_LR = 1.0
FINE_TUNE_WARMUP = 0.05


def fine_tuning_recipe() -> str:
    """The fine-tuning recipe above in plain words (the first half of the type's ``fine_tuning``)."""
    return f"{recipe_words(FINE_TUNE_STEPS, FINE_TUNE_LR)}, after a short warm-up"


COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _dataset_factor(image_count: int) -> float:
    """More images carry more to learn (and copy less): train longer on them."""
    if image_count < 300:
        return 1.0
    if image_count < 700:
        return 1.5
    return 2.0


def _model_shape(resolution: int, on_gpu: bool) -> dict[str, Any]:
    """U-Net width and depth for a resolution: small and patched on a CPU, DDPM-sized on a GPU."""
    if on_gpu:
        mults = {32: [1, 2, 2, 2], 64: [1, 2, 3, 4], 128: [1, 1, 2, 3, 4]}.get(resolution, [1, 2, 2])
        return dict(
            base_channels=128,
            channel_mults=mults,
            num_res_blocks=2,
            attention_resolutions=[16, 8],
            patch_size=1,
            head_channels=64,
        )
    # 2x2 patches: a 32 px image is a 16x16 map inside the network.
    mults = {32: [1, 2, 2], 64: [1, 2, 2, 2], 128: [1, 1, 2, 2, 2]}.get(resolution, [1, 2])
    return dict(
        base_channels=48,
        channel_mults=mults,
        num_res_blocks=1,
        attention_resolutions=[8, 4],
        patch_size=2 if resolution >= 16 else 1,
        head_channels=48,
    )


@dataclass(kw_only=True, eq=False)
class DDIMConfig(TrainingConfig):
    kind_key = "ddim"
    # The classes come with the dataset (apps.ml.engine.config.build_config(classes=...)), not from an option;
    # the architecture version with the code that built the config.
    FIXED = TrainingConfig.FIXED + ("num_classes", "classes", "architecture_version")
    # What shapes the U-Net's weights (the classes aside: apps.ml.engine.transfer.remap_class_rows maps them by name),
    # and the noise schedule the base learnt: a fine-tuned model takes them from its base.
    BASE_SHAPE = (
        "architecture_version",
        "base_channels",
        "channel_mults",
        "num_res_blocks",
        "attention_resolutions",
        "patch_size",
        "head_channels",
        "timesteps",
        "objective",
        "schedule_shift",
    )

    # 1: the U-Net of every model saved before version 2 existed (a config without the key);
    # 2: a SiLU before each residual block's projection of time + class (ADM, diffusers).
    architecture_version: int = setting(1, choices=(1, 2))

    # The U-Net.
    base_channels: int = setting(48, low=1, high=1024)
    channel_mults: list[int] = setting([1, 2, 2])
    num_res_blocks: int = setting(1, low=1, high=8)
    attention_resolutions: list[int] = setting([8, 4])
    patch_size: int = setting(1, choices=(1, 2, 4))
    head_channels: int = setting(64, low=1, high=1024)
    dropout: float = setting(0.1, low=0.0, high=0.9)
    # The diffusion process and the loss.
    timesteps: int = setting(1000, low=10, high=10_000)
    schedule_shift: float = setting(1.0, low=0.01, high=100.0)
    objective: str = setting("v", choices=("v", "eps"))
    min_snr_gamma: float | None = setting(5.0, low=0.0, high=1000.0)
    # True: min(snr + 1, gamma) / (snr + 1) for v (full weight at high noise); measured worse on
    # held-out KID than the paper's min(snr, gamma) / (snr + 1) (schedule.loss_weight).
    min_snr_plus_one: bool = False
    # The optimizer.
    learning_rate: float = setting(1e-3, low=0.0, high=1.0)
    warmup_steps: int = setting(100, low=0, high=1_000_000)
    final_lr_fraction: float = setting(0.1, low=0.0, high=1.0)  # cosine decay to this share of the peak
    weight_decay: float = setting(0.01, low=0.0, high=10.0)
    grad_clip: float | None = setting(1.0, low=0.0, high=1e6)
    ema_decay: float = setting(0.995, low=0.0, high=1.0)
    # Plain (leaking) mirror images in the training batches: only for photos that look alike mirrored
    # (apps.ml.engine.orientation; for_photos sets it). Configs saved before orientation was measured say True.
    hflip: bool = True
    # Sampling: the progress grids, then generation and the quality report.
    grid_images: int = setting(64, low=1, high=1024)
    grid_steps: int = setting(DEFAULT_SAMPLING_STEPS, low=1, high=MAX_SAMPLING_STEPS)
    sampler: str = setting(DEFAULT_SAMPLER, choices=SAMPLERS)  # "dpmpp2m" (DPM-Solver++(2M)) or "ddim"
    sampling_steps: int = setting(DEFAULT_SAMPLING_STEPS, low=1, high=MAX_SAMPLING_STEPS)
    # Class conditioning: 0 classes is an unconditional model (the layers and weights of a model
    # saved before conditioning existed). ``classes`` names the classes 0..num_classes-1 when known.
    num_classes: int = setting(0, low=0, high=100_000)
    classes: list[str] = setting([])
    # Share of training images whose label is replaced by the "no label" token, so that one network
    # also learns the unconditional prediction classifier-free guidance needs (Ho & Salimans 2022).
    label_dropout: float = setting(0.1, low=0.0, high=0.9)
    guidance_scale: float = setting(DEFAULT_GUIDANCE, low=MIN_GUIDANCE, high=MAX_GUIDANCE)  # see DEFAULT_GUIDANCE
    # Batches draw a class uniformly, then one of its photos (a conditional model), so the shortest class
    # is seen as often as the largest; False (configs saved before it existed): photos uniformly.
    class_balanced: bool = False
    # Non-leaking augmentation (apps.ml.engine.augment.conditioned_augment): the probability of each of
    # flip, 90-degree rotation and translation per training image; 0 is off (no extra layer).
    # The network is told what each image went through and samples "not augmented".
    augment_p: float = setting(0.0, low=0.0, high=1.0)
    augment_flip: bool = True  # False: the conditioned augmentation leaves out flips
    # Speed. Sampling on a CPU with bf16 instructions (AVX512-BF16 or AMX) runs the U-Net in bf16
    # autocast (the sampler's update stays float32): 1.6-2x faster at equal KID (bench/README.md).
    amp_bf16: bool = False
    cpu_sampling_bf16: bool = True
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = setting(None, choices=COMPILE_MODES)

    @classmethod
    def from_preset(
        cls, *, resolution: int, channels: int, preset: str, image_count: int, device: str = "cpu"
    ) -> DDIMConfig:
        """Small, patched U-Net on a CPU or for a set under :data:`SMALL_DATASET` images; the
        DDPM-sized one on a GPU otherwise. More images train longer (:func:`_dataset_factor`)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {PRESETS}")
        on_gpu = torch.device(device).type == "cuda"
        big = on_gpu and image_count >= SMALL_DATASET  # the DDPM-sized recipe
        steps = (GPU_STEPS if big else CPU_STEPS)[preset]
        total_steps = int(round(steps * _dataset_factor(image_count) / 100)) * 100
        return cls(
            resolution=resolution,
            channels=channels,
            preset=preset,
            image_count=image_count,
            **_model_shape(resolution, big),
            dropout=0.1 if image_count < 500 else 0.05,
            architecture_version=ARCHITECTURE_VERSION,
            schedule_shift=32 / resolution if resolution > 32 else 1.0,
            total_steps=total_steps,
            batch_size=(128 if resolution <= 64 else 64) if big else 32,
            learning_rate=2e-4 if big else 1e-3,
            warmup_steps=200 if big else 100,
            ema_decay=0.999 if big else 0.995,
            checkpoint_every=max(100, total_steps // 10),
            report_every=50 if on_gpu else 10,
            amp_bf16=on_gpu,
            channels_last=on_gpu,
            compile=on_gpu,
            hflip=False,  # until for_photos knows the photos look alike mirrored
            augment_p=AUGMENT_P if preset == "quick" else AUGMENT_P_LONGER,
        )

    def for_classes(self, names: list[str], counts: list[int] | None = None) -> DDIMConfig:
        """A class-conditional config for the classes ``names`` (label order) with ``counts`` training photos
        each: class-balanced batches, and training long enough that the shortest class gets the passes over
        its photos a one-class model of that many photos gets in this preset (the preset's steps for the
        shortest class, times the number of classes). Without ``counts`` the length stays the preset's."""
        changes: dict[str, Any] = dict(num_classes=len(names), classes=list(names), class_balanced=True)
        if counts:
            if len(counts) != len(names) or min(counts) < 1:
                raise ValueError("counts needs one number of photos (at least 1) per class")
            per_class = self.total_steps / _dataset_factor(self.image_count) * _dataset_factor(min(counts))
            total_steps = int(round(per_class * len(names) / 100)) * 100
            changes.update(total_steps=total_steps, checkpoint_every=max(100, total_steps // 10))
        return dataclasses.replace(self, **changes, extras=dict(self.extras))

    def for_base(self, base: dict[str, Any]) -> DDIMConfig:
        """Fine-tuning from a base whose config is ``base``: the base's U-Net (:attr:`BASE_SHAPE`; the
        augmentation embedding too: ``augment_p`` follows the base when one of them has none), and the recipe
        :data:`FINE_TUNE_STEPS` of this config's steps at :data:`FINE_TUNE_LR` of its learning rate, with a warm-up
        of :data:`FINE_TUNE_WARMUP` of those steps. The classes stay this dataset's."""
        changes = self._base_shape(base)
        base_augment = float(base.get("augment_p") or 0.0)
        if (base_augment > 0) != (self.augment_p > 0):
            changes["augment_p"] = base_augment
        steps = max(1, int(round(self.total_steps * FINE_TUNE_STEPS)))
        changes.update(
            total_steps=steps,
            learning_rate=self.learning_rate * FINE_TUNE_LR,
            warmup_steps=max(1, int(round(steps * FINE_TUNE_WARMUP))),
        )
        extras = {**self.extras, **{key: base[key] for key in ("groups",) if key in base}}
        return dataclasses.replace(self, **changes, extras=extras)

    def base_problems(self, base: dict[str, Any]) -> list[str]:
        """The shape's settings, and the augmentation embedding: on (``augment_p`` > 0) or off as in the base."""
        problems = super().base_problems(base)
        if (float(base.get("augment_p") or 0.0) > 0) != (self.augment_p > 0):
            problems.append(
                f"'augment_p' is {self.augment_p!r} but the base generator's is {base.get('augment_p')!r}: "
                "a fine-tuned model keeps the base's augmentation embedding (augment_p above 0, or 0)."
            )
        return problems

    def for_photos(self, orientation: dict[str, Any] | None) -> DDIMConfig:
        """Plain mirror images in the batches only when the photos look alike mirrored
        (:mod:`..orientation`); otherwise flips come only through the conditioned augmentation,
        which the network is told about (non-leaking)."""
        if not orientation:
            return self
        mirrors = bool(orientation.get("mirrors"))
        return self.replace(hflip=mirrors, augment_flip=not mirrors)
