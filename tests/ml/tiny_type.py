"""A third generator type, made only for the tests: everything the shared trainer needs, no loop of its own.

A two-layer decoder turns noise into images and learns to make them look like the training
images' mean (a deliberately trivial task). It has dropout (global RNG), an Adam optimizer with
state and an EMA, so a resume that lost any of them would train different weights.
With ``num_classes`` > 0 it learns classes (a label embedding added to the noise), so the
trainer's labels path is tested here too, not only through DDIM.
"""

from __future__ import annotations

import torch
from torch import nn

from apps.ml.engine.base import SAMPLING_BATCH_SIZE, GeneratorType
from apps.ml.engine.ema import EMA
from apps.ml.engine.images import to_uint8
from apps.ml.engine.training import LabelledImages, TrainingParts, prepare_labels


class Decoder(nn.Module):
    def __init__(self, nz: int, width: int, channels: int, resolution: int, dropout: float, num_classes: int = 0):
        super().__init__()
        self.nz, self.shape = nz, (channels, resolution, resolution)
        self.net = nn.Sequential(
            nn.Linear(nz, width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(width, channels * resolution * resolution),
            nn.Tanh(),
        )
        if num_classes:
            self.label_embed = nn.Embedding(num_classes, nz)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None:
            z = z + self.label_embed(labels)
        return self.net(z).view(-1, *self.shape)


class TinyType(GeneratorType):
    kind = "tiny-test"
    label = "Tiny (test only)"
    description = "A two-layer decoder trained towards the mean image."
    architecture_keys = ("resolution", "channels", "nz", "width", "num_classes")
    supports_labels = True  # with num_classes > 0

    @classmethod
    def default_config(cls, *, resolution=8, channels=1, preset="quick", image_count=16, device="cpu") -> dict:
        return {
            "resolution": resolution,
            "channels": channels,
            "preset": preset,
            "image_count": image_count,
            "nz": 4,
            "width": 16,
            "dropout": 0.2,
            "lr": 1e-2,
            "ema_decay": 0.9,
            "batch_size": 8,
            "total_steps": 12,
            "report_every": 3,
            "checkpoint_every": 4,
            "seed": 0,
            "num_classes": 0,
        }

    def __init__(self, config: dict, device="cpu"):
        super().__init__(config, device)
        self.decoder = self._build().eval()

    def _build(self) -> Decoder:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["seed"])
            net = Decoder(
                cfg["nz"], cfg["width"], cfg["channels"], cfg["resolution"], cfg["dropout"], cfg.get("num_classes", 0)
            )
        return net.to(self.device)

    # ------------------------------------------------------------ the trainer's hooks

    def training_parts(self) -> TrainingParts:
        decoder = self._build().train()
        return TrainingParts(
            networks={"decoder": decoder},
            optimizers={"decoder": torch.optim.Adam(decoder.parameters(), lr=self.config["lr"])},
            ema=EMA(decoder, self.config["ema_decay"]),
            ema_of="decoder",
        )

    def training_data(self, images, labels=None):
        if not self.config.get("num_classes"):
            return super().training_data(images, labels)  # refuses labels
        data = super().training_data(images)
        return LabelledImages(
            data,
            prepare_labels(labels, count=data.shape[0], num_classes=self.config["num_classes"], device=self.device),
        )

    def training_step(self, parts, data, step, rng):
        decoder, optimizer = parts.networks["decoder"], parts.optimizers["decoder"]
        images, labels = data if isinstance(data, LabelledImages) else (data, None)
        size = self.config["batch_size"]
        index = torch.randint(0, images.shape[0], (size,), device=self.device, generator=rng)
        real = images[index]
        noise = torch.randn(size, self.config["nz"], device=self.device, generator=rng)
        loss = (decoder(noise, None if labels is None else labels[index]) - real).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def grid_samples(self, parts, step):
        noise = torch.randn(4, self.config["nz"], generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            return to_uint8(parts.sampler.eval()(noise.to(self.device)))

    def finish_training(self, parts, step):
        self.decoder = parts.sampler.eval()

    # ------------------------------------------------------------ sampling and files (the contract's save and load)

    @torch.no_grad()
    def sample(self, n, *, seed, steps=None, batch_size=SAMPLING_BATCH_SIZE, labels=None, guidance=None):
        noise = torch.randn(n, self.config["nz"], generator=torch.Generator().manual_seed(seed))
        labels = None if labels is None else torch.as_tensor(labels, device=self.device)
        return to_uint8(self.decoder(noise.to(self.device), labels))

    def weights_state(self):
        return dict(self.decoder.state_dict())

    def load_weights(self, weights):
        self.decoder.load_state_dict(weights)


def tiny_config(**changes) -> dict:
    return {**TinyType.default_config(), **changes}


def tiny_images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny_labels(n: int = 16, num_classes: int = 3) -> torch.Tensor:
    return torch.arange(n) % num_classes
