"""The DCGAN networks (Radford et al., 2016) in the shape of the PyTorch DCGAN tutorial.

Generator: a noise vector [N, nz, 1, 1] goes through a 4x4 transposed
convolution, then stride-2 transposed convolutions that double the size and
halve the width (BatchNorm + ReLU after each), and a final one to the image
channels with Tanh, so the output is [N, C, R, R] in [-1, 1].

Discriminator: the mirror image: stride-2 convolutions with LeakyReLU(0.2)
(BatchNorm on all but the first), then a 4x4 convolution to one logit per
image. It returns *logits* (the tutorial's Sigmoid is folded into the loss,
which is the numerically safe equivalent). With ``spectral_norm=True`` every
convolution is spectrally normalised and BatchNorm is left out, as in the
SN-GAN discriminator.

At 64 px the widths are the tutorial's (ngf*8 ... ngf); 32 px drops the widest
block and 128 px adds one more (ngf*16).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

SUPPORTED_RESOLUTIONS = (32, 64, 128)


def _stride2_blocks(resolution: int) -> int:
    """How many stride-2 (size-doubling) layers sit between 4x4 and ``resolution``."""
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(f"DCGAN supports resolutions {SUPPORTED_RESOLUTIONS}, not {resolution}")
    return int(math.log2(resolution // 4))


class Generator(nn.Module):
    """Noise [N, nz, 1, 1] (or [N, nz]) -> images [N, channels, resolution, resolution] in [-1, 1]."""

    def __init__(self, *, resolution: int = 64, channels: int = 3, nz: int = 100, ngf: int = 64):
        super().__init__()
        self.nz = nz
        blocks = _stride2_blocks(resolution)
        width = ngf * 2 ** (blocks - 1)  # 64 px: ngf * 8, as in the tutorial
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(blocks - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            z = z[:, :, None, None]
        images: torch.Tensor = self.main(z)
        return images


class Discriminator(nn.Module):
    """Images [N, channels, resolution, resolution] -> one real/fake logit per image, shape [N]."""

    def __init__(self, *, resolution: int = 64, channels: int = 3, ndf: int = 64, spectral_norm: bool = False):
        super().__init__()
        blocks = _stride2_blocks(resolution)

        def conv(cin: int, cout: int, stride: int, padding: int) -> nn.Module:
            layer = nn.Conv2d(cin, cout, 4, stride, padding, bias=False)
            if not spectral_norm:
                return layer
            # Initialise before wrapping: spectral_norm estimates the weight's largest singular
            # value once, at wrap time, and a later re-initialisation would make that estimate stale.
            init_weights(layer)
            return _spectral_norm(layer)

        width = ndf
        layers: list[nn.Module] = [conv(channels, width, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(blocks - 1):
            layers.append(conv(width, width * 2, 2, 1))
            if not spectral_norm:
                layers.append(nn.BatchNorm2d(width * 2))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width *= 2
        layers.append(conv(width, 1, 1, 0))  # 4x4 -> 1x1
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.main(x)
        return logits.flatten()


def init_weights(module: nn.Module) -> None:
    """The tutorial's init: conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0.

    Spectrally normalised convolutions are skipped: they were initialised
    before being wrapped (see :class:`Discriminator`).
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        if not hasattr(module, "parametrizations"):
            nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_generator(config: Mapping[str, Any]) -> Generator:
    net = Generator(resolution=config["resolution"], channels=config["channels"], nz=config["nz"], ngf=config["ngf"])
    net.apply(init_weights)
    return net


def build_discriminator(config: Mapping[str, Any]) -> Discriminator:
    net = Discriminator(
        resolution=config["resolution"],
        channels=config["channels"],
        ndf=config["ndf"],
        spectral_norm=config["spectral_norm"],
    )
    net.apply(init_weights)
    return net


# ---------------------------------------------------------------- BatchNorm statistics of an averaged generator


@torch.no_grad()
def recalibrate_batchnorm(net: Generator, *, batches: int = 8, batch_size: int = 64, seed: int = 0) -> None:
    """Re-estimate the BatchNorm running statistics of a generator from fresh noise.

    A generator is sampled in eval mode (so an image depends only on its own
    noise, not on the rest of the batch), and eval mode uses the running
    statistics. For an EMA generator those statistics were never measured,
    so they are recomputed here as the exact average over ``batches``
    batches of noise drawn from a fixed ``seed`` (deterministic).
    """
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    device = next(net.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    saved_momentum = [m.momentum for m in norms]
    was_training = net.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    for _ in range(batches):
        net(torch.randn(batch_size, net.nz, 1, 1, device=device, generator=generator))
    for m, momentum in zip(norms, saved_momentum):
        m.momentum = momentum
    net.train(was_training)
