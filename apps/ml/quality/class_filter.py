"""The class filter: at generation, drop images a classifier does not recognise as their class.

For a conditional generator (one that learned several classes) every generated image is meant to show
one class. A :class:`~apps.ml.quality.classifier.SmallCNN` (trained by :func:`classifier.train_classifier`, with
plain augmentation) learns the classes from the generator's *training* photos only; its **score** for
a generated image is the probability it gives the image's intended class. The held-out photos (never
seen by the generator nor by this classifier) calibrate what a real photo scores, per class:

- a class with at least :data:`MIN_HELDOUT` held-out photos: the :data:`QUANTILE` (5th percentile) of
  its held-out photos' own-class probability, so about 5 % of real photos of the class would fail too;
- a class with fewer: the same percentile over every class's held-out photos pooled (when the pooled
  photos number :data:`MIN_HELDOUT` or more);
- no usable held-out photos at all: chance, ``1 / classes`` (the image must look more like its class
  than a guess would).

Each threshold is then capped at :data:`CEILING` (0.5): an image whose own class gets most of the
probability is always recognised, however confident the classifier is on real photos. There is no floor
above 0: where the classifier cannot tell a class's real photos apart (their 5th percentile is near 0)
the filter lets that class's images through rather than drop images real photos would fail too.

An image is kept when ``score >= threshold[its class]``. The filter is trained once per generator and
stored as bytes (:meth:`ClassFilter.to_bytes`, a safetensors file whose metadata holds the thresholds).
Nothing here knows about Django.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from apps.ml.quality.classifier import ClassifierSettings, SmallCNN, predict_proba, train_classifier

QUANTILE = 0.05
MIN_HELDOUT = 10
CEILING = 0.5
FORMAT = 1  # bump when the recipe changes: stored filters of another format are trained again
SEED = 0


@dataclass
class ClassFilter:
    """A trained classifier of a generator's classes and the per-class threshold of its own-class probability.

    ``calibration``: per class, how its threshold was obtained (``source``: "heldout", "pooled" or
    "chance"; ``heldout``: its held-out photos; ``quantile``: the calibrated value before the ceiling).
    """

    model: SmallCNN
    thresholds: list[float]
    image_size: int = 32
    calibration: list[dict[str, Any]] = field(default_factory=list)

    @property
    def classes(self) -> int:
        return len(self.thresholds)

    def scores(self, images: torch.Tensor, labels: torch.Tensor | int) -> torch.Tensor:
        """The probability each uint8 image gets for its intended class (``labels``: one per image, or one for all)."""
        if not len(images):
            return torch.empty(0)
        probs = predict_proba(self.model, images, image_size=self.image_size)
        return probs.gather(1, _labels(labels, len(images)).view(-1, 1)).flatten()

    def check(self, images: torch.Tensor, labels: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keep, scores): keep is True where the score reaches the threshold of the image's class."""
        scores = self.scores(images, labels)
        limits = torch.tensor(self.thresholds, dtype=scores.dtype)[_labels(labels, len(images))]
        return scores >= limits, scores

    def describe(self, names: list[str] | None = None) -> dict[str, Any]:
        """JSON-serialisable thresholds and their calibration, keyed by class name (or index)."""
        names = names or [str(i) for i in range(self.classes)]
        return {
            "quantile": QUANTILE,
            "ceiling": CEILING,
            "min_heldout": MIN_HELDOUT,
            "classes": {
                names[i]: {"threshold": round(t, 6), **self.calibration[i]} for i, t in enumerate(self.thresholds)
            },
        }

    def to_bytes(self) -> bytes:
        model = self.model.to("cpu")
        meta = {
            "format": FORMAT,
            "thresholds": self.thresholds,
            "image_size": self.image_size,
            "calibration": self.calibration,
            "channels": model.body[0].in_channels,
            "width": model.body[0].out_channels,
        }
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        return save_safetensors(state, metadata={"class_filter": json.dumps(meta)})

    @classmethod
    def from_bytes(cls, data: bytes) -> ClassFilter | None:
        """The stored filter, or None when it was stored in another :data:`FORMAT` (train it again)."""
        state = load_safetensors(data)
        meta = json.loads(_metadata(data)["class_filter"])
        if meta.get("format") != FORMAT:
            return None
        model = SmallCNN(meta["channels"], len(meta["thresholds"]), meta["width"])
        model.load_state_dict(state)
        model.eval()
        return cls(
            model=model, thresholds=meta["thresholds"], image_size=meta["image_size"], calibration=meta["calibration"]
        )


def _labels(labels: torch.Tensor | int, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).long()
    return labels.expand(n) if labels.dim() == 0 else labels


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file held in memory (its JSON header)."""
    size = int.from_bytes(data[:8], "little")
    metadata: dict[str, str] = json.loads(data[8 : 8 + size]).get("__metadata__", {})
    return metadata


def _quantile(values: torch.Tensor) -> float:
    return torch.quantile(values.double(), QUANTILE).item()


def calibrate(heldout_scores: list[torch.Tensor]) -> tuple[list[float], list[dict[str, Any]]]:
    """Thresholds from each class's held-out photos' own-class probabilities (see the module docstring)."""
    classes = len(heldout_scores)
    pooled = torch.cat([s.flatten() for s in heldout_scores]) if heldout_scores else torch.empty(0)
    thresholds, calibration = [], []
    for scores in heldout_scores:
        if len(scores) >= MIN_HELDOUT:
            value, source = _quantile(scores), "heldout"
        elif len(pooled) >= MIN_HELDOUT:
            value, source = _quantile(pooled), "pooled"
        else:
            value, source = 1 / classes, "chance"
        thresholds.append(min(CEILING, value))
        calibration.append({"source": source, "heldout": len(scores), "quantile": round(value, 6)})
    return thresholds, calibration


def train_class_filter(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    heldout_images: torch.Tensor | None,
    heldout_labels: torch.Tensor | None,
    *,
    classes: int,
    settings: ClassifierSettings | None = None,
    seed: int = SEED,
) -> ClassFilter:
    """Train the classifier on the training photos (plain augmentation on) and calibrate it on the held-out ones.

    uint8 [N,C,H,W] images, long labels in ``range(classes)``. Every class needs training photos.
    """
    s = replace(settings or ClassifierSettings(), augment=True)
    per_class = [train_images[train_labels == c] for c in range(classes)]
    model = train_classifier(per_class, seed=seed, settings=s)
    held = []
    for c in range(classes):
        images = (
            heldout_images[heldout_labels == c]
            if heldout_images is not None and len(heldout_images)
            else train_images[:0]
        )
        held.append(predict_proba(model, images, image_size=s.image_size)[:, c] if len(images) else torch.empty(0))
    thresholds, calibration = calibrate(held)
    return ClassFilter(
        model=model.to("cpu").eval(), thresholds=thresholds, image_size=s.image_size, calibration=calibration
    )
