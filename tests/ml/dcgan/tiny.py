"""Tiny DCGAN configs and data for the CPU tests (shared by the DCGAN and transfer tests)."""

import torch

from apps.ml.dcgan import DCGAN


def tiny_config(**changes) -> dict:
    config = DCGAN.default_config(resolution=32, channels=1, preset="quick", image_count=32)
    config.update(total_steps=12, batch_size=8, ngf=4, ndf=4, checkpoint_every=6, report_every=3, seed=0)
    config.update(changes)
    return config


def blobs(n: int = 32, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Float [-1, 1] images: a bright square of random position and size on a black background."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.full((n, 1, size, size), -1.0)
    for i in range(n):
        side = int(torch.randint(8, 16, (), generator=generator))
        top, left = torch.randint(0, size - side, (2,), generator=generator).tolist()
        images[i, :, top : top + side, left : left + side] = 1.0
    return images
