"""Which way the user's photos face: may mirror images or quarter turns be added as the same kind of photo?

A flip or a turn is only a harmless augmentation when the photos already show it. Sandals in a
catalogue all point one way; a generator or a classifier trained on mirrored sandals learns
"half of them point the other way" as a fact of the data. So every place that augments (the
offline augmentation stage, the generator's training, the usefulness test's classifier) asks
this module first.

Two numbers per class, on the images at a small size:

* the **asymmetry** of the class's mean image: the squared distance between the mean and its
  mirror image over the photos' mean squared distance to the mean. When the photos face both ways,
  or the object is left-right symmetric, the mean is nearly symmetric: 0.006-0.04 on Fashion-MNIST
  (bags, shirts, dresses, coats; sandals with half of them mirrored). One-way classes score 0.3-3
  (sandals 0.47, sneakers 1.2, ankle boots 3.0). Mirror images may be added below
  :data:`SYMMETRIC`.
* the **share** of photos closer to the mirrored mean than to the mean: what the user is shown
  ("7 % of your photos face the other way"; sandals 7 %, sneakers and boots 0 %).

Quarter turns are measured the same way against the mean turned by 90, 180 and 270 degrees (the
largest of the three distances): photos that stand one way up (every Fashion-MNIST class: 0.09 and
more) get no turned copies; textures and top-down pictures, whose mean looks the same turned, do.

Django-free; :func:`measure` returns :class:`Orientation`, stored as JSON (``as_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

# Below this asymmetry of the mean image (see the module notes), mirror images (quarter turns) are
# the same kind of photo. Fashion-MNIST: symmetric or two-way 0.006-0.04, one-way 0.3-3.
SYMMETRIC = 0.1
# Fewer photos than this (in a class) cannot tell: treated as facing one way (the safe side).
MIN_PHOTOS = 8
MEASURE_SIZE = 32  # pixels: the images are compared at this size


@dataclass
class Orientation:
    """What :func:`measure` found. ``mirrors`` / ``rotations``: mirror images / quarter turns are
    the same kind of photo, so augmentation may add them. ``classes``: the same per class name
    (labelled datasets), the dataset-level answer being "yes" only when every class says yes."""

    images: int
    mirror_share: float | None  # share closer to the mirrored mean than to the mean (None: too few photos)
    turn_share: float | None  # share closer to a turned mean (square images only)
    asymmetry: float | None  # the mean image's mirror asymmetry over the photos' spread (largest class)
    turn_asymmetry: float | None  # the same for quarter turns (square images only)
    mirrors: bool
    rotations: bool
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Orientation | None:
        if not data:
            return None
        keys = ("images", "mirror_share", "turn_share", "asymmetry", "turn_asymmetry", "mirrors", "rotations")
        values: dict[str, Any] = {key: data.get(key) for key in keys}
        return cls(**values, classes=data.get("classes") or {})

    def sentence(self) -> str:
        """What it means for the user's photos, in one or two plain sentences."""
        return describe(self.as_dict())


def describe(data: dict[str, Any] | None) -> str:
    """The plain-language summary of a stored :meth:`Orientation.as_dict` ("" when not measured)."""
    if not data:
        return ""
    if data.get("mirror_share") is None:
        return "Too few photos to tell which way they face: no mirror images or turned copies are added."
    if data["mirrors"]:
        mirror = "Your photos look alike mirrored (or face both ways), so mirror images may be added."
    else:
        mirror = (
            f"Your photos face one way (only {data['mirror_share']:.0%} face the other), so no mirror images are added."
        )
        classes = data.get("classes") or {}
        one_way = sorted(name for name, c in classes.items() if not c.get("mirrors"))
        if classes and len(one_way) < len(classes):
            mirror = (
                f"Some classes face one way ({', '.join(one_way)}), so no mirror images are added "
                f"(mirror images are added only when every class looks alike mirrored)."
            )
    turn = (
        "Turned copies (90 degrees) may be added: your photos have no fixed way up."
        if data.get("rotations")
        else "No turned copies are added: your photos stand one way up."
    )
    return f"{mirror} {turn}"


def _unit(images: torch.Tensor) -> torch.Tensor:
    """float [N, C, S, S] in [0, 1] at :data:`MEASURE_SIZE`, from uint8 or [-1, 1] float images."""
    x = images.detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else ((x.float() + 1) / 2).clamp(0, 1)
    if x.shape[-1] != MEASURE_SIZE or x.shape[-2] != MEASURE_SIZE:
        x = F.interpolate(x, size=(MEASURE_SIZE, MEASURE_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return x


def _class_measures(x: torch.Tensor, square: bool) -> dict[str, Any]:
    """Shares and asymmetries (module notes) of one class's images ``x`` (unit floats); Nones when too few."""
    if len(x) < MIN_PHOTOS:
        return {"mirror_share": None, "turn_share": None, "asymmetry": None, "turn_asymmetry": None}
    flat = x.flatten(1)
    mean = x.mean(0, keepdim=True)
    to_mean = (flat - mean.flatten(1)).pow(2).sum(1)
    spread = float(to_mean.mean()) or 1e-12
    to_mirror = (flat - mean.flip(-1).flatten(1)).pow(2).sum(1)
    out: dict[str, Any] = {
        "mirror_share": float((to_mirror < to_mean).float().mean()),
        "asymmetry": float((mean - mean.flip(-1)).pow(2).sum()) / spread,
        "turn_share": None,
        "turn_asymmetry": None,
    }
    if square:
        turned = [mean.rot90(k, dims=(2, 3)) for k in (1, 2, 3)]
        to_turned = torch.stack([(flat - t.flatten(1)).pow(2).sum(1) for t in turned])
        out["turn_share"] = float((to_turned.min(0).values < to_mean).float().mean())
        out["turn_asymmetry"] = max(float((mean - t).pow(2).sum()) for t in turned) / spread
    return out


def measure(
    images: torch.Tensor, labels: torch.Tensor | None = None, class_names: list[str] | None = None
) -> Orientation:
    """Measure ``images`` (uint8 or [-1, 1] float [N, C, H, W]); with ``labels`` (int [N]) each
    image is compared with the mean of its own class, and ``class_names`` names them."""
    if images.ndim != 4:
        raise ValueError(f"expected [N, C, H, W] images, got shape {tuple(images.shape)}")
    square = images.shape[-1] == images.shape[-2]
    x = _unit(images)
    groups = (
        [(None, x)]
        if labels is None
        else [(class_names[i] if class_names else str(i), x[labels.cpu() == i]) for i in sorted(set(labels.tolist()))]
    )
    classes, found = {}, []
    for name, members in groups:
        m = _class_measures(members, square)
        m["mirrors"] = m["asymmetry"] is not None and m["asymmetry"] < SYMMETRIC
        m["rotations"] = m["turn_asymmetry"] is not None and m["turn_asymmetry"] < SYMMETRIC
        found.append((len(members), m))
        if name is not None:
            classes[name] = {
                "images": len(members),
                **{k: _round(v) if isinstance(v, float) else v for k, v in m.items()},
            }
    measured = [(n, m) for n, m in found if m["asymmetry"] is not None]
    counted = sum(n for n, _ in measured)

    def pooled(key: str) -> float | None:
        values = [(n, m[key]) for n, m in measured if m[key] is not None]
        return _round(sum(n * v for n, v in values) / sum(n for n, _ in values)) if values else None

    def largest(key: str) -> float | None:
        values = [m[key] for _, m in measured if m[key] is not None]
        return _round(max(values)) if values else None

    return Orientation(
        images=len(x),
        mirror_share=pooled("mirror_share") if counted else None,
        turn_share=pooled("turn_share"),
        asymmetry=largest("asymmetry"),
        turn_asymmetry=largest("turn_asymmetry"),
        mirrors=all(m["mirrors"] for _, m in found),
        rotations=all(m["rotations"] for _, m in found),
        classes=classes,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
