"""The realism critic: a small classifier that tells generated images from the real photos.

After training, the evaluate stage trains a :class:`~.usefulness.SmallCNN` to
say "real" for the generator's training images and "generated" for a pool of
its samples. Its probability of "real" is an image's **realism**: a generator
trained on a few hundred photos leaves marks (blotches, broken strokes,
texture) that a classifier picks up, and the images with the most of them are
the ones that help a downstream classifier least. At generation the filter
keeps only images whose realism is at least :attr:`Critic.threshold`, which
is set so that :data:`KEEP_SHARE` of freshly generated images (not the pool the
critic learnt from) pass.

This is discriminator rejection sampling (Azadi et al. 2019) with a fresh
classifier instead of the GAN's own discriminator, so it works the same for
every generator type. Measured on 150 Fashion-MNIST sandals (bench/README.md):
it raises the synthetic-only accuracy of DDIM images from a GQI of 74 to 82
and of DCGAN images from 92 to 94.

Saved next to the model as ``critic.safetensors`` (weights) and ``critic.json``
(shape and threshold); never pickled.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_json, load_tensors, save_json_atomic, save_tensors_atomic
from .usefulness import ClassifierSettings, SmallCNN, classifier_input, train_classifier

KEEP_SHARE = 0.5  # share of generated images the threshold lets through
WEIGHTS = "critic.safetensors"
CONFIG = "critic.json"


@dataclass
class Critic:
    """A trained real-vs-generated classifier and the realism an image needs to be kept."""

    model: SmallCNN
    image_size: int
    threshold: float
    keep_share: float

    @torch.no_grad()
    def realism(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Probability that each uint8 image is a real photo, as the critic sees it (float64, [N])."""
        self.model.eval()
        device = next(self.model.parameters()).device
        x = classifier_input(images, self.image_size)
        chunks = [torch.softmax(self.model(x[i : i + batch_size].to(device)).double(), 1)[:, 0].cpu()
                  for i in range(0, len(x), batch_size)]
        return torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.float64)

    def save(self, directory: Path) -> None:
        """Write ``critic.safetensors`` and ``critic.json`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_tensors_atomic(state, directory / WEIGHTS)
        first = self.model.body[0]
        save_json_atomic({"channels": first.in_channels, "width": first.out_channels, "image_size": self.image_size,
                          "threshold": self.threshold, "keep_share": self.keep_share}, directory / CONFIG)

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> Critic | None:
        """The critic saved in ``directory``, or None when there is none (generators made before it existed)."""
        if not (directory / WEIGHTS).exists() or not (directory / CONFIG).exists():
            return None
        config = load_json(directory / CONFIG)
        model = SmallCNN(config["channels"], 2, config["width"])
        model.load_state_dict(load_tensors(directory / WEIGHTS))
        return cls(model.to(device).eval(), config["image_size"], config["threshold"], config["keep_share"])


def train_critic(
    real: torch.Tensor,
    generated: torch.Tensor,
    *,
    calibration: torch.Tensor,
    keep_share: float = KEEP_SHARE,
    seed: int = 0,
    settings: ClassifierSettings | None = None,
) -> Critic:
    """Train the critic on uint8 ``real`` vs ``generated`` images and set its threshold.

    ``calibration``: other generated images, not in ``generated``: the
    threshold is the realism that ``keep_share`` of them reach.
    """
    if not 0 < keep_share <= 1:
        raise ValueError("keep_share must be in (0, 1]")
    if len(real) < 2 or len(generated) < 2 or len(calibration) < 1:
        raise ValueError("the critic needs at least two real and two generated images, and images to calibrate on")
    s = settings or ClassifierSettings()
    model = train_classifier([real, generated], seed=seed, settings=s)
    critic = Critic(model, s.image_size, 0.0, keep_share)
    scores = critic.realism(calibration)
    critic.threshold = float(torch.quantile(scores, 1 - keep_share)) if keep_share < 1 else 0.0
    return critic
