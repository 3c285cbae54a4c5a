"""The usefulness test: do generated images help a classifier learn the class?

The study's test, made automatic. A small CNN learns to tell the generated
class apart from other classes (the user's other classes, or a "not this
class" set) and is scored on held-out *real* images. It is trained several
ways, which differ only in the images of the generated class and in whether
the training images are augmented:

- ``real``:      the real training images;
- ``synthetic``: as many generated images instead (no real image of the class);
- ``mixed``:     the real images plus as many generated ones;
- ``real_aug``:  the real images, with plain augmentation (:data:`AUGMENTATION`);
- ``mixed_aug``: real plus generated images, with the same augmentation;
- ``oracle``:    real plus as many *more real* images, with the same augmentation
                 (when the caller has them): the ceiling of what extra images give.

Every arm gets the same small random shifts; the ``*_aug`` arms and the oracle
all get the same augmentation besides. The generated images are only credited
with what they add *beyond* plain augmentation: ``credit`` = ``mixed_aug`` -
``real_aug``, with a 95 % interval from a paired bootstrap that redraws both the
classifier seeds and the test images (the few held-out photos are the main
noise). ``verdict`` says it in words, from the interval, never from the point
value: "adds accuracy beyond augmentation", "no measurable gain beyond
augmentation" or "hurts".

The score is **balanced accuracy** (mean recall over all classes) on held-out
real images. Recall of the generated class alone is never used: adding any
images labelled with that class, even noise, raises its recall by shifting the
prior. Training also samples classes uniformly (``ClassifierSettings.class_balanced``,
the default; False draws images uniformly, classes at their natural frequencies), so the
class sizes do not shift the prior either; what changes between the runs is only the
content of the images. GQI (GAN Quality Index) is chance-corrected:
``(synthetic - 1/K) / (real - 1/K) * 100`` for K classes (0 = chance, 100 = as
good as the real photos).

Only the generated class holds generated images, so a classifier could learn
"generated-looking => this class"; since the test images are all real, that
shortcut can only cost the mixed arms accuracy: the credit errs low, not high.

Everything is deterministic for a seed (on the same machine and thread count)
and small enough to run on a CPU inside the pipeline.

Result values share one shape, see :func:`metric`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


def metric(value: float | None, reason: str | None = None, **extra) -> dict:
    """The one shape of every reported number: ``{"value": x, "reason": r, ...}``.

    ``value`` is a float, or None when it could not be measured, in which case
    ``reason`` says why in one plain sentence. Extra keys (``std``,
    ``per_seed``, ``reference`` ...) add detail and may be absent.
    """
    if value is not None:
        value = round(float(value), 6)
    return {"value": value, "reason": None if value is not None else (reason or "not measured"), **extra}


# --------------------------------------------------------------------------- images


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,C,H,W] -> float32 in [0, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected [N,C,H,W] with C in (1, 3), got {tuple(images.shape)}")
    return images.float() / 255.0


def match_format(images: torch.Tensor, *, channels: int, size: int | tuple[int, int]) -> torch.Tensor:
    """Convert uint8 images to ``channels`` (1 or 3) and ``size`` (for negatives from other datasets)."""
    x = to_unit_float(images)
    if x.shape[1] != channels:
        if channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x * weights).sum(1, keepdim=True)
        else:
            x = x.expand(-1, 3, -1, -1)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def split(images: torch.Tensor, *, holdout: float | int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle with ``seed`` and cut into (train, held-out); ``holdout`` is a fraction or a count."""
    n = len(images)
    n_out = holdout if isinstance(holdout, int) else round(n * holdout)
    n_out = max(0, min(n, n_out))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return images[order[n_out:]], images[order[:n_out]]


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


# --------------------------------------------------------------------------- classifier


class SmallCNN(nn.Module):
    """Three conv blocks, global average pooling, a linear head.

    ``features(x)`` gives the ``4 * width`` pooled features (used by the
    Frechet / kernel distances in :mod:`metrics`); ``forward(x)`` the logits.
    """

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
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


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
    rand = lambda: torch.rand(n, generator=gen)  # noqa: E731
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
    if len(class_images) < 2 or any(len(c) == 0 for c in class_images):
        raise ValueError("need at least two classes with images each")
    if weights is not None and [len(w) for w in weights] != [len(c) for c in class_images]:
        raise ValueError("weights need one value per image of each class")
    if validation is not None and len(validation) != len(class_images):
        raise ValueError("validation needs one tensor per class")
    data = [classifier_input(c, s.image_size) for c in class_images]
    counts = torch.tensor([len(c) for c in data])
    starts = torch.cumsum(counts, 0) - counts
    label_of = torch.repeat_interleave(torch.arange(len(data)), counts)
    x_all = torch.cat(data).to(s.device)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(x_all.shape[1], len(data), s.width).to(s.device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.steps, pct_start=0.15)
    weight_all = torch.cat(weights).float().to(s.device) if weights is not None else None
    prior = torch.tensor(class_counts, dtype=torch.float64) if class_counts is not None else counts.double()
    log_prior = (prior / prior.sum()).log().float().to(s.device)
    best_score, best_state, best_step, since_best = -1.0, None, s.steps, 0
    model.train()
    steps_run = 0
    for step in range(1, s.steps + 1):
        steps_run = step
        if s.class_balanced:
            labels = torch.randint(0, len(data), (s.batch_size,), generator=gen)
            idx = starts[labels] + (torch.rand(s.batch_size, generator=gen) * counts[labels]).long()
        else:
            idx = torch.randint(0, len(label_of), (s.batch_size,), generator=gen)
            labels = label_of[idx]
        labels, idx = labels.to(s.device), idx.to(s.device)
        batch = _shift(x_all[idx], s.shift, gen)
        if s.augment:
            batch = _augment(batch, gen, s.mirror)
        logits = model(batch)
        if s.logit_adjust:
            logits = logits + s.logit_adjust * log_prior
        loss = F.cross_entropy(logits, labels, reduction="none")
        loss = (loss * weight_all[idx]).mean() if weight_all is not None else loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if validation is not None and (step % s.check_every == 0 or step == s.steps):
            score = balanced_accuracy(validation, model, image_size=s.image_size)
            model.train()
            if score >= best_score:
                since_best = 0 if score > best_score else since_best + 1
                best_score, best_step = score, step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            if since_best >= s.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    model.best_step, model.steps_run = best_step, steps_run
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


# --------------------------------------------------------------------------- the test

ARMS = ("real", "synthetic", "mixed", "real_aug", "mixed_aug", "oracle")
AUGMENTED_ARMS = ("real_aug", "mixed_aug", "oracle")
BOOTSTRAP = 2000
CREDIT_WORDS = {
    "gain": "adds accuracy beyond augmentation",
    "none": "no measurable gain beyond augmentation",
    "loss": "hurts",
}


def _summary(values: list[float], reason: str | None = None) -> dict:
    if not values:
        return metric(None, reason)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return metric(statistics.fmean(values), std=round(std, 6), per_seed=[round(v, 6) for v in values])


def _correct(model: SmallCNN, test_classes: list[torch.Tensor], image_size: int) -> list[torch.Tensor]:
    """Per test class, a bool per image: predicted right."""
    return [predict(model, images, image_size=image_size) == label for label, images in enumerate(test_classes)]


def _bootstrap_accuracies(correct: list[list[torch.Tensor]], draws: int, seed: int) -> torch.Tensor:
    """[draws] balanced accuracies of one arm, over resampled seeds and resampled test images.

    ``correct[s][c]``: bool per test image of class c, classifier seed s. The same ``seed`` gives
    the same draws for every arm, so differences between arms are paired.
    """
    gen = torch.Generator().manual_seed(seed)
    n_seeds = len(correct)
    seed_pick = torch.randint(0, n_seeds, (draws, n_seeds), generator=gen)
    recalls = []
    for c in range(len(correct[0])):
        per_seed = torch.stack([correct[s][c].double() for s in range(n_seeds)])  # [S, n_c]
        pick = torch.randint(0, per_seed.shape[1], (draws, per_seed.shape[1]), generator=gen)
        recall = per_seed[:, pick].mean(dim=2)  # [S, draws]
        recalls.append(recall.gather(0, seed_pick.T).mean(dim=0))  # mean over the drawn seeds
    return torch.stack(recalls).mean(dim=0)


def credit(
    correct_with: list[list[torch.Tensor]],
    correct_without: list[list[torch.Tensor]],
    point: list[float],
    *,
    draws: int = BOOTSTRAP,
    seed: int = 0,
) -> dict:
    """The accuracy one arm adds over another: mean paired difference with a 95 % bootstrap interval.

    ``point``: the per-seed differences (the value is their mean). Adds ``low`` / ``high`` (the
    interval) and ``verdict`` ("gain", "none" or "loss"; "none" whenever the interval holds 0).
    """
    diff = _bootstrap_accuracies(correct_with, draws, seed) - _bootstrap_accuracies(correct_without, draws, seed)
    low, high = torch.quantile(diff, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    word = "gain" if low > 0 else "loss" if high < 0 else "none"
    return _summary(point) | {
        "low": round(low, 6),
        "high": round(high, 6),
        "verdict": word,
        "words": CREDIT_WORDS[word],
        "draws": draws,
    }


def _null_result(reason: str, classes: int) -> dict:
    keys = (*ARMS, "gqi", "credit")
    return {k: metric(None, reason) for k in keys} | {"counts": {}, "classes": classes}


def usefulness_test(
    *,
    real_train: torch.Tensor,
    real_test: torch.Tensor,
    synthetic: torch.Tensor,
    negatives_train: list[torch.Tensor],
    negatives_test: list[torch.Tensor],
    extra_real: torch.Tensor | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    settings: ClassifierSettings | None = None,
) -> dict:
    """Train every arm for each seed and return the report's ``usefulness`` dict.

    ``real_train`` / ``real_test``: uint8 images of the generated class (the
    test images must not have been seen by the generator). ``negatives_*``:
    one uint8 tensor per other class, same channels and size. ``synthetic``:
    generated images; the first ``len(real_train)`` are used. ``extra_real``:
    more real images of the class for the oracle; the first
    ``len(real_train)`` are used.

    Returns one :func:`metric` per arm of :data:`ARMS` (with ``std`` and
    ``per_seed``), ``gqi`` (chance-corrected, per seed then averaged),
    ``credit`` (``mixed_aug`` - ``real_aug``, see :func:`credit`) and, with an
    oracle, ``oracle_credit`` (``oracle`` - ``real_aug``); plus ``counts``
    (images per role), ``classes``, ``seeds`` and ``augmentation``.
    """
    s = settings or ClassifierSettings()
    n = len(real_train)
    if not negatives_train or not negatives_test or not any(len(t) for t in negatives_test):
        return _null_result("no other classes to compare against (upload other classes or a 'not this class' set)", 1)
    if n == 0 or len(real_test) == 0:
        return _null_result("no real images of the class to train on and test with", 1 + len(negatives_train))

    synthetic = synthetic[:n]
    extra = extra_real[:n] if extra_real is not None and len(extra_real) else None
    test_classes = [real_test, *negatives_test]
    chance = 1 / len(test_classes)
    positives = {"real": real_train, "real_aug": real_train}
    if len(synthetic):
        positives |= {
            "synthetic": synthetic,
            "mixed": torch.cat([real_train, synthetic]),
            "mixed_aug": torch.cat([real_train, synthetic]),
        }
    if extra is not None:
        positives["oracle"] = torch.cat([real_train, extra])

    scores: dict[str, list[float]] = {k: [] for k in ARMS}
    correct: dict[str, list[list[torch.Tensor]]] = {k: [] for k in ARMS}
    gqi: list[float] = []
    plain, augmented = replace(s, augment=False), replace(s, augment=True)
    for seed in seeds:
        for name, pos in positives.items():
            model = train_classifier(
                [pos, *negatives_train], seed=seed, settings=augmented if name in AUGMENTED_ARMS else plain
            )
            hits = _correct(model, test_classes, s.image_size)
            correct[name].append(hits)
            scores[name].append(statistics.fmean(h.double().mean().item() for h in hits))
        if scores["synthetic"] and scores["real"][-1] > chance:
            gqi.append((scores["synthetic"][-1] - chance) / (scores["real"][-1] - chance) * 100)

    no_synth = "no generated images left to test"
    out = {name: _summary(scores[name], no_synth) for name in ARMS}
    out["oracle"] = _summary(scores["oracle"], "no further real images of this class were available")
    out["gqi"] = _summary(
        gqi, no_synth if not scores["synthetic"] else "the classifier trained on your photos did no better than chance"
    )
    out["credit"] = (
        credit(
            correct["mixed_aug"], correct["real_aug"], [m - r for m, r in zip(scores["mixed_aug"], scores["real_aug"])]
        )
        if scores["mixed_aug"]
        else metric(None, no_synth)
    )
    if scores["oracle"]:
        out["oracle_credit"] = credit(
            correct["oracle"], correct["real_aug"], [o - r for o, r in zip(scores["oracle"], scores["real_aug"])]
        )
    return out | {
        "counts": {
            "real_train": n,
            "real_test": len(real_test),
            "synthetic": len(synthetic),
            "extra_real": 0 if extra is None else len(extra),
            "negatives_train": [len(t) for t in negatives_train],
            "negatives_test": [len(t) for t in negatives_test],
        },
        "classes": len(test_classes),
        "seeds": list(seeds),
        "augmentation": AUGMENTATION,
    }


# --------------------------------------------------------------------------- a whole labelled dataset

BALANCE_ARMS = ("real_aug", "mixed_aug", "synthetic")
# The recipe SynthGen recommends for mixing generated images into a training set: each generated image's loss
# weight (a real photo weighs 1). metadata.jsonl and manifest.json carry it, and the balance test's mixed arm
# trains with it, so the credit the report gives is the credit of following the advice. Chosen on
# bench/longtail.py (see bench/README.md, "Images that count").
GENERATED_WEIGHT = 0.5
# ... and at most this many generated images per real photo of a class: on that benchmark, filling tails of 24
# photos with 470 generated ones cost 5.4 points of balanced accuracy; 100 (about 4 a photo), with the class
# imbalance corrected by the real photo counts, cost nothing measurable (-0.1 [-0.8, +0.6]) and gained nothing.
GENERATED_PER_PHOTO = 4
# The photo equivalent's real arms: ``real_aug`` with each short class cut to a share of its photos.
PHOTO_FRACTIONS = {"real_aug_25": 0.25, "real_aug_50": 0.5}
MIN_SHORT_HELDOUT = 10  # held-out photos of the short classes, all together, for a photo count to mean something
MIN_SUBSAMPLE = 2  # photos of every short class in the smallest (25 %) arm


def subsample(images: torch.Tensor, fraction: float, *, seed: int, salt: int = 0) -> torch.Tensor:
    """``fraction`` of ``images`` (rounded half up, at least 1), drawn with ``seed``: the draws of one seed are
    nested (its 25 % is part of its 50 %), so its learning curve differs only in how many photos it saw."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 1000 + salt))
    return images[order[: max(1, math.floor(len(images) * fraction + 0.5))]]


def _names(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _photo_equivalent_skipped(
    short: list[int], real_train: list[torch.Tensor], real_test: list[torch.Tensor], class_names: list[str]
) -> str | None:
    """Why the dataset is too small for a photo count to mean something (None: it is not)."""
    if not short:
        return "every class has as many photos as the largest: there is no short class to count photos for"
    held = sum(len(real_test[i]) for i in short)
    if held < MIN_SHORT_HELDOUT:
        return (
            f"too few unseen photos of the short classes to count photos: {held}, under {MIN_SHORT_HELDOUT} "
            "(the interval would be too wide to mean anything)"
        )
    small = [
        class_names[i]
        for i in short
        if len(subsample(real_train[i], min(PHOTO_FRACTIONS.values()), seed=0)) < MIN_SUBSAMPLE
    ]
    if small:
        return (
            f"too few photos to count photos: 25 % of the photos of {', '.join(small)} is under "
            f"{MIN_SUBSAMPLE} photos a class, too few for a learning curve"
        )
    return None


def _photo_words(pe: dict, credit_: dict) -> str:
    """The photo equivalent in words, from its interval and the credit's (never a gain that the
    credit's interval does not show)."""
    ends = ["unbounded" if pe[end] is None else f"{pe[end]:.0f}" for end in ("low", "high")]
    interval = (
        f"95 % interval {ends[0]}–{ends[1]}" if "unbounded" not in ends else f"95 % interval {ends[0]} to {ends[1]}"
    )
    if pe["verdict"] == "gain":
        photos = f"{pe['photos']:.0f}"
        return f"the generated images are worth about {photos} more real photos of the short classes ({interval})"
    seen = pe["detectable"]
    could = (
        f"; the test could have seen a gain of about {seen['photos']:.0f} more real photos "
        f"({seen['accuracy'] * 100:.1f} points of accuracy)"
        if seen.get("photos") is not None
        else f"; the test could have seen a gain of about {seen['accuracy'] * 100:.1f} points of accuracy"
    )
    if credit_.get("verdict") == "loss":
        return (
            "no gain: the generated images lower the classifier's accuracy (their credit's 95 % interval is "
            "below 0), so they are worth no real photos"
        )
    if pe["photos"] is None:
        return (
            "no photo count: the classifier's accuracy does not rise with more photos of the short classes, "
            "so there is no learning curve to read the generated images on"
        )
    if pe["photos"] == 0:
        return "no gain: the generated images are worth no more real photos of the short classes" + could
    if pe["curve_verdict"] == "gain":  # the curve reads a gain, the credit's interval holds 0
        return (
            f"no measurable gain: the generated images read as about {pe['photos']:.0f} more real photos of the "
            f"short classes ({interval}), but their credit's 95 % interval holds 0" + could
        )
    return (
        f"no measurable gain: the generated images read as about {pe['photos']:.0f} more real photos of the "
        f"short classes, but the {interval} holds 0" + could
    )


def _photo_equivalent(correct: dict, scores: dict, sizes: list[int], credit_: dict) -> dict:
    """:func:`learning_curve.photo_equivalent` on the balanced accuracy, against the short classes' photos,
    with a paired bootstrap over seeds and test images (the credit's draws), and its words."""
    from apps.ml.quality.learning_curve import photo_equivalent

    arms = ("real_aug_25", "real_aug_50", "real_aug")
    boot = [_bootstrap_accuracies(correct[name], BOOTSTRAP, 0).numpy() for name in (*arms, "mixed_aug")]
    pe = photo_equivalent(sizes, [scores[name] for name in arms], scores["mixed_aug"], resampled=(boot[:3], boot[3]))
    curve_verdict = pe["verdict"]
    # A gain needs the credit's interval above 0 too, and a number to name (a flat curve has none).
    if curve_verdict == "gain" and (credit_.get("verdict") != "gain" or pe["photos"] is None or pe["low"] is None):
        pe["verdict"] = "none"
    pe |= {
        "curve_verdict": curve_verdict,
        "sizes": dict(zip((*arms,), sizes)),
        "accuracy": {name: round(statistics.fmean(scores[name]), 6) for name in (*arms, "mixed_aug")},
        "accuracy_is": "balanced accuracy on every class's unseen photos (as credit)",
        "reason": None,
    }
    pe["curve_words"] = pe.pop("words")
    pe["words"] = _photo_words(pe, credit_)
    return pe


def balance_test(
    *,
    real_train: list[torch.Tensor],
    real_test: list[torch.Tensor],
    generated: list[torch.Tensor],
    class_names: list[str],
    seeds: tuple[int, ...] = (0, 1, 2),
    settings: ClassifierSettings | None = None,
    generated_weight: float = GENERATED_WEIGHT,
) -> dict:
    """Do generated images help a classifier of *every* class of a labelled dataset?

    One tensor per class in each list (uint8, one shape). Every class gets generated images, so no
    class can be told apart by looking generated. Arms, each a classifier of all the classes scored on
    the held-out photos ``real_test`` (balanced accuracy):

    - ``real_aug``:  the photos, with plain augmentation;
    - ``mixed_aug``: the photos plus generated images filling every class up to the largest class's
      photo count but to at most :data:`GENERATED_PER_PHOTO` generated images per photo of the class (at
      least one generated image per class, as far as ``generated`` holds), augmented, each
      generated image weighing ``generated_weight`` in the loss (the recipe :data:`GENERATED_WEIGHT`);
    - ``synthetic``: generated images only (the classification accuracy score of Ravuri & Vinyals 2019);
    - ``real_aug_25`` / ``real_aug_50``: as ``real_aug``, with each *short* class (fewer photos than the
      largest) cut to 25 % / 50 % of its photos (drawn per seed, nested), for the photo equivalent.

    ``credit`` = ``mixed_aug`` - ``real_aug`` with its paired-bootstrap 95 % interval (:func:`credit`);
    ``short_classes``: the recall of each class with fewer photos than the largest, per arm.
    ``photo_equivalent``: what the generated images are worth in real photos of the short classes
    (:func:`learning_curve.photo_equivalent`: the balanced accuracy at 25, 50 and 100 % of the short
    classes' photos traces a learning curve, ``mixed_aug`` is read on it; the credit's paired bootstrap
    over seeds and test images. Not the short classes' own recall: images of the wrong class labelled
    as a short class raise that recall at the other classes' cost, and would read as many photos);
    its ``words`` say it, or why it could not be counted (``photos`` None, ``reason``), and never claim a
    gain that ``credit``'s interval does not show.
    Classes without held-out photos are left out of the scores (``classes_scored`` counts the others,
    ``unscored`` names them, and the credit's words say nothing is claimed for them); when every short class
    is among them nothing is measured (the images are for those classes).
    """
    s = settings or ClassifierSettings()
    scored = [i for i, t in enumerate(real_test) if len(t)]
    largest = max(len(t) for t in real_train)
    short_classes = [i for i, t in enumerate(real_train) if len(t) < largest]
    unscored = [class_names[i] for i in range(len(real_test)) if i not in scored]
    unscored_short = [class_names[i] for i in short_classes if i not in scored]
    reason = None
    if len(scored) < 2:
        reason = "fewer than two classes have held-out photos to test with"
    elif short_classes and len(unscored_short) == len(short_classes):
        # The images are for the short classes; scoring only the others would credit them with what they do to
        # classes they were not made for (a tail of 30 keeps no photo back, see evaluation.holdout_count).
        reason = (
            f"{_names(unscored_short)}, the classes the generated images are for, kept no unseen photos to "
            "test on (a class keeps photos back from 40 photos on): nothing is claimed for them"
        )
    if reason:
        return {name: metric(None, reason) for name in (*BALANCE_ARMS, "credit")} | {
            "classes_scored": len(scored),
            "unscored": unscored,
            "photo_equivalent": {
                "photos": None,
                "low": None,
                "high": None,
                "verdict": "not measured",
                "reason": reason,
                "words": f"no photo count: {reason}",
            },
        }
    fill = [
        generated[i][: max(1, min(largest - len(real_train[i]), GENERATED_PER_PHOTO * len(real_train[i])))]
        for i in range(len(real_train))
    ]
    mixed_weights = [
        torch.cat([torch.ones(len(real)), torch.full((len(extra),), float(generated_weight))])
        for real, extra in zip(real_train, fill)
    ]  # the photos weigh 1, generated images the recipe's
    arms = {
        "real_aug": real_train,
        "mixed_aug": [torch.cat([real, extra]) for real, extra in zip(real_train, fill)],
        "synthetic": [g if len(g) else real[:0] for g, real in zip(generated, real_train)],
    }
    if any(len(g) == 0 for g in arms["synthetic"]):
        arms.pop("synthetic")
    skipped = _photo_equivalent_skipped(short_classes, real_train, real_test, class_names)
    if skipped is None:  # two more trainings a seed: the short classes cut to 25 % and 50 % (drawn per seed)
        arms |= {name: None for name in PHOTO_FRACTIONS}
    plain, augmented = replace(s, augment=False), replace(s, augment=True)
    scores: dict[str, list[float]] = {name: [] for name in arms}
    correct: dict[str, list[list[torch.Tensor]]] = {name: [] for name in arms}
    short = [j for j, i in enumerate(scored) if len(real_train[i]) < largest]
    for seed in seeds:
        for name, classes in arms.items():
            if name in PHOTO_FRACTIONS:
                classes = [
                    subsample(t, PHOTO_FRACTIONS[name], seed=seed, salt=i) if i in short_classes else t
                    for i, t in enumerate(real_train)
                ]
            model = train_classifier(
                classes,
                seed=seed,
                settings=plain if name == "synthetic" else augmented,
                weights=mixed_weights if name == "mixed_aug" else None,
            )
            hits = [predict(model, real_test[i], image_size=s.image_size) == i for i in scored]
            correct[name].append(hits)
            scores[name].append(statistics.fmean(h.double().mean().item() for h in hits))
    out = {name: _summary(scores.get(name, []), "a class has no generated images") for name in BALANCE_ARMS}
    out["credit"] = credit(
        correct["mixed_aug"], correct["real_aug"], [m - r for m, r in zip(scores["mixed_aug"], scores["real_aug"])]
    )
    if unscored_short:
        out["credit"]["words"] += (
            f" (measured without {_names(unscored_short)}, which kept no unseen photos: nothing is claimed for them)"
        )
    if skipped is None:
        for name in PHOTO_FRACTIONS:
            out[name] = _summary(scores[name])
        sizes = [
            sum(len(subsample(real_train[i], fraction, seed=0)) for i in short_classes)
            for fraction in PHOTO_FRACTIONS.values()
        ] + [sum(len(real_train[i]) for i in short_classes)]
        out["photo_equivalent"] = _photo_equivalent(correct, scores, sizes, out["credit"])
    else:
        out["photo_equivalent"] = {
            "photos": None,
            "low": None,
            "high": None,
            "verdict": "not measured",
            "reason": skipped,
            "words": f"no photo count: {skipped}",
        }
    out["short_classes"] = {
        class_names[scored[j]]: {
            name: round(statistics.fmean(hits[j].double().mean().item() for hits in correct[name]), 6) for name in arms
        }
        for j in short
    }
    counts = {
        name: {class_names[i]: len(t) for i, t in enumerate(classes)}
        for name, classes in arms.items()
        if classes is not None
    }
    for name, fraction in PHOTO_FRACTIONS.items():
        if name in arms:
            counts[name] = {
                class_names[i]: len(subsample(t, fraction, seed=0)) if i in short_classes else len(t)
                for i, t in enumerate(real_train)
            }
    return out | {
        "counts": counts,
        "classes_scored": len(scored),
        "unscored": unscored,
        "generated_weight": float(generated_weight),
        "seeds": list(seeds),
        "augmentation": AUGMENTATION,
    }
