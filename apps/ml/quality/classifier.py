"""The small classifier the quality measures train: a CNN, its training recipe, its predictions.

:func:`train_classifier` learns to tell classes of uint8 images apart, one tensor per class. Batches
sample the classes uniformly by default (``ClassifierSettings.class_balanced``), so the class sizes do
not shift the prior; every batch gets small random shifts, and with ``augment`` the plain
augmentation of :data:`AUGMENTATION`. :func:`balanced_accuracy` (mean recall over the classes) is the
score the usefulness and balance tests report. Deterministic for a seed (on the same machine and
thread count) and small enough to run on a CPU inside the pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from apps.ml.quality.images import to_unit_float


def classifier_input(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 -> float in [-1, 1], shrunk to at most ``image_size`` pixels on the long side."""
    x = to_unit_float(images) * 2 - 1
    h, w = x.shape[-2:]
    if max(h, w) > image_size:
        scale = image_size / max(h, w)
        x = F.interpolate(
            x,
            size=(max(1, round(h * scale)), max(1, round(w * scale))),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
    return x


class SmallCNN(nn.Module):
    """Three conv blocks, global average pooling, a linear head.

    ``features(x)`` gives the ``4 * width`` pooled features (used by the
    Frechet / kernel distances in :mod:`metrics`); ``forward(x)`` the logits.
    """

    # Set by train_classifier: the step whose weights the model holds, and how many steps ran.
    best_step: int
    steps_run: int

    def __init__(self, channels: int, num_classes: int, width: int = 16):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, num_classes)
        self.feature_dim = 4 * w

    def features(self, x: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.body(x)
        return pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.body(x))
        return logits


@dataclass
class ClassifierSettings:
    """How the small classifier is trained; the defaults take seconds on a CPU at 32 px."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    width: int = 16
    image_size: int = 32  # larger images are shrunk to this before the classifier sees them
    shift: int = 2  # random translation of up to this many pixels while training; 0 = off
    augment: bool = False  # also the plain augmentation of AUGMENTATION (the *_aug arms turn it on)
    # The augmentation's mirror images: only for photos that look alike mirrored (apps.ml.engine.orientation);
    # for one-way photos (sandals) a flip teaches the classifier a kind of photo the test never shows.
    mirror: bool = True
    # True: each batch row draws a class uniformly, then an image of it (class sizes do not shift the
    # prior: oversampling the small classes); False: images uniformly, classes at their natural frequencies.
    class_balanced: bool = True
    # Logit adjustment (Menon et al. 2021): tau * log(class prior) added to the logits while training, the
    # standard long-tail loss; 0 = plain cross-entropy. Used with class_balanced False (natural frequencies).
    logit_adjust: float = 0.0
    # Early stopping, when train_classifier gets validation photos: their balanced accuracy is checked every
    # ``check_every`` steps, training stops after ``patience`` checks without a better one, and the best
    # weights are kept (``steps`` is then the most it trains).
    check_every: int = 100
    patience: int = 5
    device: str = "cpu"  # e.g. "cuda" on a GPU worker; results then differ slightly from the CPU's


def _shift(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``pixels`` (edges replicated), one offset per batch row."""
    if pixels <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * pixels + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pixels + 1, (n,), generator=gen).to(x.device)
    rows = (
        (dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h))
        .view(n, 1, h, 1)
        .expand(-1, x.shape[1], -1, w + 2 * pixels)
    )
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)).view(n, 1, 1, w).expand(-1, x.shape[1], h, -1)
    return out.gather(3, cols)


AUGMENTATION = (
    "horizontal flip (only for photos that look alike mirrored), rotation up to 10 degrees, crop keeping "
    "85-100 % of the area, brightness and contrast +-10 %"
)
MAX_ROTATION = math.radians(10)
CROP_AREA = (0.85, 1.0)
JITTER = 0.1


def _augment(x: torch.Tensor, gen: torch.Generator, mirror: bool = True) -> torch.Tensor:
    """:data:`AUGMENTATION` on a float [-1, 1] batch, drawn per image (edges repeat the border);
    ``mirror`` False: no flips (the draws stay the same)."""
    n = len(x)

    def rand() -> torch.Tensor:
        return torch.rand(n, generator=gen)

    angle = (rand() * 2 - 1) * MAX_ROTATION
    side = (CROP_AREA[0] + rand() * (CROP_AREA[1] - CROP_AREA[0])).sqrt()
    flip = torch.where((rand() < 0.5) & mirror, -1.0, 1.0)
    tx, ty = ((rand() * 2 - 1) * (1 - side), (rand() * 2 - 1) * (1 - side))
    cos, sin = angle.cos() * side, angle.sin() * side
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = ((rand() * 2 - 1) * 2 * JITTER).view(n, 1, 1, 1).to(x)
    contrast = (1 + (rand() * 2 - 1) * JITTER).view(n, 1, 1, 1).to(x)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean + brightness).clamp(-1, 1)


@dataclass
class _TrainingSet:
    """Every class's images in one tensor, class after class, with what the batches are drawn and weighed by."""

    images: torch.Tensor  # float [-1, 1], on the training device
    counts: torch.Tensor  # images per class
    starts: torch.Tensor  # each class's first row in ``images``
    label_of: torch.Tensor  # the class of each row
    weights: torch.Tensor | None  # the loss weight of each row (None: all 1)
    log_prior: torch.Tensor  # log class shares, for logit adjustment

    def draw(self, s: ClassifierSettings, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, rows) of one batch: a class uniformly, then an image of it; or images uniformly."""
        if s.class_balanced:
            labels = torch.randint(0, len(self.counts), (s.batch_size,), generator=gen)
            idx = self.starts[labels] + (torch.rand(s.batch_size, generator=gen) * self.counts[labels]).long()
        else:
            idx = torch.randint(0, len(self.label_of), (s.batch_size,), generator=gen)
            labels = self.label_of[idx]
        return labels.to(s.device), idx.to(s.device)

    def loss(
        self, model: SmallCNN, labels: torch.Tensor, idx: torch.Tensor, s: ClassifierSettings, gen: torch.Generator
    ) -> torch.Tensor:
        """The batch's mean (weighted) cross-entropy, on shifted (and augmented) images."""
        batch = _shift(self.images[idx], s.shift, gen)
        if s.augment:
            batch = _augment(batch, gen, s.mirror)
        logits = model(batch)
        if s.logit_adjust:
            logits = logits + s.logit_adjust * self.log_prior
        loss = F.cross_entropy(logits, labels, reduction="none")
        return (loss * self.weights[idx]).mean() if self.weights is not None else loss.mean()


def _training_set(
    class_images: list[torch.Tensor],
    s: ClassifierSettings,
    weights: list[torch.Tensor] | None,
    class_counts: list[int] | None,
) -> _TrainingSet:
    data = [classifier_input(c, s.image_size) for c in class_images]
    counts = torch.tensor([len(c) for c in data])
    prior = torch.tensor(class_counts, dtype=torch.float64) if class_counts is not None else counts.double()
    return _TrainingSet(
        images=torch.cat(data).to(s.device),
        counts=counts,
        starts=torch.cumsum(counts, 0) - counts,
        label_of=torch.repeat_interleave(torch.arange(len(data)), counts),
        weights=torch.cat(weights).float().to(s.device) if weights is not None else None,
        log_prior=(prior / prior.sum()).log().float().to(s.device),
    )


def _check_inputs(
    class_images: list[torch.Tensor], weights: list[torch.Tensor] | None, validation: list[torch.Tensor] | None
) -> None:
    if len(class_images) < 2 or any(len(c) == 0 for c in class_images):
        raise ValueError("need at least two classes with images each")
    if weights is not None and [len(w) for w in weights] != [len(c) for c in class_images]:
        raise ValueError("weights need one value per image of each class")
    if validation is not None and len(validation) != len(class_images):
        raise ValueError("validation needs one tensor per class")


@dataclass
class _EarlyStopping:
    """The best validation score so far, the step and weights that scored it, and checks since it improved."""

    step: int
    score: float = -1.0
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    since_best: int = 0

    def check(self, score: float, model: SmallCNN, step: int) -> None:
        """Record one validation score; a tie counts as no better, but its later weights are kept."""
        if score >= self.score:
            self.since_best = 0 if score > self.score else self.since_best + 1
            self.score, self.step = score, step
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.since_best += 1


def train_classifier(
    class_images: list[torch.Tensor],
    *,
    seed: int,
    settings: ClassifierSettings | None = None,
    weights: list[torch.Tensor] | None = None,
    validation: list[torch.Tensor] | None = None,
    class_counts: list[int] | None = None,
) -> SmallCNN:
    """Train a :class:`SmallCNN` on uint8 images, one tensor per class (label = list index).

    Batches draw the class uniformly, then an image of it, so the class sizes
    do not bias the classifier (``settings.class_balanced``; False draws images
    uniformly, so each class comes at its share of the images). Deterministic
    for ``seed``; leaves the global random state untouched.

    ``weights``: one float tensor per class, a loss weight per image (e.g. generated images below 1);
    the batch's loss is the mean of weight x cross-entropy. ``validation``: held-out uint8 images, one
    tensor per class: early stopping on their balanced accuracy (``settings.check_every``,
    ``settings.patience``), the best weights are returned. The returned model's ``best_step`` says which
    step's weights it holds, ``steps_run`` how many steps ran. ``class_counts``: the class sizes logit
    adjustment corrects for (default: the images given; e.g. only the real photos, when generated images
    fill some classes but the classifier does not take them for real ones).
    """
    s = settings or ClassifierSettings()
    _check_inputs(class_images, weights, validation)
    data = _training_set(class_images, s, weights, class_counts)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(data.images.shape[1], len(class_images), s.width).to(s.device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.steps, pct_start=0.15)
    best = _EarlyStopping(step=s.steps)
    model.train()
    steps_run = 0
    for step in range(1, s.steps + 1):
        steps_run = step
        labels, idx = data.draw(s, gen)
        loss = data.loss(model, labels, idx, s, gen)
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        opt.step()
        sched.step()
        if validation is not None and (step % s.check_every == 0 or step == s.steps):
            score = balanced_accuracy(validation, model, image_size=s.image_size)
            model.train()
            best.check(score, model, step)
            if best.since_best >= s.patience:
                break
    if best.state is not None:
        model.load_state_dict(best.state)
    model.eval()
    model.best_step, model.steps_run = best.step, steps_run
    return model


@torch.no_grad()
def predict_proba(
    model: SmallCNN, images: torch.Tensor, *, image_size: int = 32, batch_size: int = 512
) -> torch.Tensor:
    """[N, classes] softmax probabilities per uint8 image (on the CPU, float32)."""
    model.eval()
    device = next(model.parameters()).device
    x = classifier_input(images, image_size)
    if not len(x):
        return torch.empty(0, model.head.out_features)
    return torch.cat([model(x[i : i + batch_size].to(device)).softmax(1).cpu() for i in range(0, len(x), batch_size)])


def predict(model: SmallCNN, images: torch.Tensor, *, image_size: int = 32, batch_size: int = 512) -> torch.Tensor:
    """Predicted class index per uint8 image."""
    return predict_proba(model, images, image_size=image_size, batch_size=batch_size).argmax(1)


def balanced_accuracy(class_images: list[torch.Tensor], model: SmallCNN, *, image_size: int = 32) -> float:
    """Mean over classes of the share of that class's images predicted as it (classes without images skipped)."""
    recalls = [
        (predict(model, images, image_size=image_size) == label).float().mean().item()
        for label, images in enumerate(class_images)
        if len(images)
    ]
    return sum(recalls) / len(recalls)
