"""The maths of one DDIM training step: the random batch, the weighted denoising loss, the optimizer and its
learning rate over the run (:meth:`apps.ml.ddim.generator_type.DDIM.training_step` puts them together)."""

from __future__ import annotations

import math

import torch
from torch import nn

from apps.ml.ddim.conditioning import ClassIndex
from apps.ml.ddim.config import DDIMConfig
from apps.ml.ddim.schedule import loss_weight, training_target


def random_batch(
    images: torch.Tensor,
    labels: torch.Tensor | None,
    config: DDIMConfig,
    generator: torch.Generator,
    class_index: ClassIndex | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``config.batch_size`` images drawn with replacement (class-balanced through ``class_index`` when given),
    half of them mirrored where ``hflip`` says the photos look alike mirrored, and their labels (None for none)."""
    size = config.batch_size
    if class_index is not None:
        index = class_index.draw(size, generator)
    else:
        index = torch.randint(0, images.shape[0], (size,), device=images.device, generator=generator)
    batch = images[index]
    if config.hflip:
        flip = torch.rand(size, device=images.device, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    return batch, (labels[index] if labels is not None else None)


def weighted_loss(
    prediction: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, config: DDIMConfig
) -> torch.Tensor:
    """The denoising loss (a 0-d float32 tensor) of the network's ``prediction`` for images ``x0`` noised with
    ``noise`` to ``alpha_bar``: the config's objective (eps, x0 or v), Min-SNR weighted per image."""
    target = training_target(x0, noise, alpha_bar, config.objective)
    per_image = (prediction.float() - target).pow(2).mean(dim=(1, 2, 3))
    weight = loss_weight(
        alpha_bar / (1 - alpha_bar), config.objective, config.min_snr_gamma, plus_one=config.min_snr_plus_one
    )
    return (weight * per_image).mean()


def new_optimizer(model: nn.Module, config: DDIMConfig, *, fused: bool) -> torch.optim.Optimizer:
    """AdamW at the config's peak learning rate (fused: one kernel per step, on CUDA)."""
    return torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(0.9, 0.99),
        weight_decay=config.weight_decay,
        fused=True if fused else None,  # None: torch's default
    )


def learning_rate_at(config: DDIMConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` of the peak at ``total_steps``."""
    peak = config.learning_rate
    warmup = config.warmup_steps
    if step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, config.total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = config.final_lr_fraction
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
