"""Tiny DDIM models and data for the CPU tests (shared by the DDIM, orientation, transfer and guidance tests)."""

from __future__ import annotations

import torch

from apps.ml.ddim import DDIM


def tiny_config(**overrides) -> dict:
    config = DDIM.default_config(resolution=32, channels=1, preset="quick", image_count=150, device="cpu")
    config.update(
        resolution=8,
        base_channels=8,
        channel_mults=[1, 2],
        num_res_blocks=1,
        attention_resolutions=[4],
        head_channels=8,
        groups=4,
        patch_size=1,
        dropout=0.0,
        batch_size=16,
        total_steps=8,
        warmup_steps=2,
        learning_rate=2e-3,
        checkpoint_every=4,
        report_every=2,
        grid_images=4,
        grid_steps=3,
        sampling_steps=4,
        ema_decay=0.9,
    )
    config.update(overrides)
    return config


def tiny_images(n: int = 16, channels: int = 1, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Smooth blobs in [-1, 1]: a little structure for the model to learn."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    centre = torch.rand(n, 2, generator=g) - 0.5
    d = (xx[None] - centre[:, 0, None, None]) ** 2 + (yy[None] - centre[:, 1, None, None]) ** 2
    img = torch.exp(-d / 0.15) * 2 - 1
    return img[:, None].repeat(1, channels, 1, 1)


def weights(gen: DDIM) -> list[torch.Tensor]:
    """Copies of every weight of the model and of its EMA."""
    return [t.clone() for t in (*gen.model.state_dict().values(), *gen.ema.state_dict().values())]


def perturb(gen: DDIM) -> None:
    """Random weights everywhere (zero-initialised output layers would make every sample alike)."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in gen.ema.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        gen.model.load_state_dict(gen.ema.model.state_dict())


class ForwardSpy:
    """Records the labels and augmentation vectors every call of ``net`` received."""

    def __init__(self, net: torch.nn.Module):
        self.calls: list[dict] = []
        net.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        named = dict(zip(("x", "t", "labels", "augment"), args), **kwargs)
        self.calls.append(
            {
                key: (None if named.get(key) is None else named[key].detach().clone())
                for key in ("x", "labels", "augment")
            }
        )
