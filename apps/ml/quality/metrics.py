"""How close generated images are to real ones, and how varied.

All functions take uint8 image tensors ``[N, C, H, W]`` (C = 1 or 3) at the
generator's resolution and need no downloaded model:

- :func:`sliced_wasserstein`: distance between the distributions of small
  patches of a Laplacian pyramid (Karras et al. 2018, "Progressive Growing of
  GANs"), one number per pyramid level; 0 for identical sets.
- :func:`train_feature_net` + :func:`frechet_distance` / :func:`kernel_distance`:
  FID- and KID-style distances in the features of a small CNN trained on the
  user's own images (no ImageNet network).
- :func:`diversity_ratio`: variety of the generated images over that of the
  real ones (1.0 = as varied, towards 0 = mode collapse).

Near-copies are found by :mod:`copies`; realism and coverage by :mod:`realism`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from apps.ml.quality.classifier import ClassifierSettings, SmallCNN, classifier_input, train_classifier
from apps.ml.quality.diversity import mean_pairwise_distance
from apps.ml.quality.images import to_unit_float

# --------------------------------------------------------------------------- diversity


def diversity_ratio(generated: torch.Tensor, real: torch.Tensor, *, seed: int = 0) -> float:
    """Mean pairwise distance of the generated images over that of the real ones.

    1.0: as varied as the real images; towards 0: the generator repeats itself.
    Pure noise scores above 1 (noise is very varied), so read it with the noise check.
    """
    real_mpd = mean_pairwise_distance(real, seed=seed)
    if real_mpd <= 0:
        raise ValueError("the real images are all identical; diversity is undefined")
    return mean_pairwise_distance(generated, seed=seed) / real_mpd


# --------------------------------------------------------------------------- sliced Wasserstein

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def blur(x: torch.Tensor) -> torch.Tensor:
    """5-tap binomial (Gaussian-like) blur of float [N,C,H,W], per channel, edges replicated."""
    c = x.shape[1]
    k = _BINOMIAL.to(x)
    x = F.pad(x, (2, 2, 2, 2), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)


def laplacian_pyramid(x: torch.Tensor, *, min_size: int = 8) -> list[torch.Tensor]:
    """Band-pass levels of float [N,C,H,W], finest first; the last level is the low-pass rest.

    Halves the resolution while the next level would still be at least
    ``min_size`` pixels on its short side.
    """
    levels = []
    current = x
    while min(current.shape[-2:]) // 2 >= min_size:
        low = blur(current)[..., ::2, ::2]
        up = F.interpolate(low, size=current.shape[-2:], mode="bilinear", align_corners=False)
        levels.append(current - blur(up))
        current = low
    levels.append(current)
    return levels


def _patches(level: torch.Tensor, per_image: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``per_image`` random size x size patches from each image -> [N*per_image, C*size*size]."""
    n, c, h, w = level.shape
    size = min(size, h, w)
    offsets = torch.arange(size)
    ys = torch.randint(0, h - size + 1, (n, per_image, 1), generator=gen) + offsets  # [N, P, size]
    xs = torch.randint(0, w - size + 1, (n, per_image, 1), generator=gen) + offsets
    rows = torch.arange(n).view(n, 1, 1, 1)
    patches = level[rows, :, ys[..., :, None], xs[..., None, :]]  # [N, P, size, size, C]
    return patches.permute(0, 1, 4, 2, 3).reshape(n * per_image, c * size * size)


def _swd(a: torch.Tensor, b: torch.Tensor, directions: int, repeats: int, gen: torch.Generator) -> float:
    """Sliced Wasserstein-1 distance between two equally sized descriptor sets."""
    total = 0.0
    for _ in range(repeats):
        proj = torch.randn(a.shape[1], directions, generator=gen, dtype=a.dtype)
        proj /= proj.norm(dim=0, keepdim=True)
        pa, _ = torch.sort((proj.T @ a.T).contiguous(), dim=1)  # sorting along the last dim is fast
        pb, _ = torch.sort((proj.T @ b.T).contiguous(), dim=1)
        total += (pa - pb).abs().mean().item()
    return total / repeats


def sliced_wasserstein(
    real: torch.Tensor,
    generated: torch.Tensor,
    *,
    seed: int = 0,
    max_images: int = 512,
    patches_per_image: int = 32,
    patch_size: int = 7,
    directions: int = 128,
    repeats: int = 4,
) -> dict[str, Any]:
    """SWD on Laplacian-pyramid patches, as in Karras et al. 2018.

    Both sets are cut to the same number of images (at most ``max_images``,
    chosen with ``seed``); from each pyramid level the same number of random
    7x7 patches is taken per image. Patch descriptors of both sets are
    normalised with the *real* patches' per-channel mean and std (so a global
    shift of brightness counts too), then the sliced Wasserstein distance is
    measured along ``directions`` random unit directions, ``repeats`` times.

    Returns ``{"levels": [swd per level, finest first, x1000], "mean": their mean}``;
    identical sets give 0.
    """
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"image shapes differ: {tuple(real.shape[1:])} vs {tuple(generated.shape[1:])}")
    gen = torch.Generator().manual_seed(seed)
    n = min(len(real), len(generated), max_images)
    if n == 0:
        raise ValueError("need images in both sets")
    state = gen.get_state()
    pick_r = torch.randperm(len(real), generator=gen)[:n]
    gen.set_state(state)  # same choice for sets of the same size: identical sets give exactly 0
    pick_g = torch.randperm(len(generated), generator=gen)[:n]
    pyr_r = laplacian_pyramid(to_unit_float(real[pick_r]).double())
    pyr_g = laplacian_pyramid(to_unit_float(generated[pick_g]).double())
    channels = real.shape[1]
    levels = []
    for lr, lg in zip(pyr_r, pyr_g):
        state = gen.get_state()
        dr = _patches(lr, patches_per_image, patch_size, gen)
        gen.set_state(state)  # same patch positions in both sets
        dg = _patches(lg, patches_per_image, patch_size, gen)
        per_channel_r = dr.view(len(dr), channels, -1)
        mean = per_channel_r.mean(dim=(0, 2), keepdim=True)
        std = per_channel_r.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
        dr = ((per_channel_r - mean) / std).flatten(1)
        dg = ((dg.view(len(dg), channels, -1) - mean) / std).flatten(1)
        levels.append(_swd(dr, dg, directions, repeats, gen) * 1e3)
    return {"levels": [round(v, 4) for v in levels], "mean": sum(levels) / len(levels)}


# --------------------------------------------------------------------------- feature distances


class FeatureNet:
    """A small CNN trained on the user's own images; ``__call__`` gives [N, D] features.

    ``task`` says what it learnt: ``"classes"`` (the class against the user's
    other classes) or ``"rotation"`` (self-supervised: which of 0/90/180/270
    degrees an image was turned by), used when there are no other classes.
    """

    def __init__(self, model: SmallCNN, image_size: int, task: str):
        self.model = model
        self.image_size = image_size
        self.task = task

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        self.model.eval()
        device = next(self.model.parameters()).device
        x = classifier_input(images, self.image_size)
        return torch.cat(
            [self.model.features(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
        ).double()


def train_feature_net(
    real: torch.Tensor,
    negatives: list[torch.Tensor] | None = None,
    *,
    seed: int = 0,
    settings: ClassifierSettings | None = None,
) -> FeatureNet:
    """Train the feature CNN on ``real`` against ``negatives`` (one tensor per class), or by rotations."""
    s = settings or ClassifierSettings()
    negatives = [n for n in (negatives or []) if len(n)]
    if negatives:
        model = train_classifier([real, *negatives], seed=seed, settings=s)
        return FeatureNet(model, s.image_size, "classes")
    if real.shape[-1] != real.shape[-2]:
        raise ValueError("rotation features need square images")
    rotated = [torch.rot90(real, k, dims=(2, 3)) for k in range(4)]
    model = train_classifier(rotated, seed=seed, settings=s)
    return FeatureNet(model, s.image_size, "rotation")


def frechet_distance(fa: torch.Tensor, fb: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula).

    ``||mu_a - mu_b||^2 + tr(Sa + Sb - 2 (Sa^1/2 Sb Sa^1/2)^1/2)``. Biased
    upwards for small sets; compare numbers measured with the same set sizes.
    """
    fa, fb = fa.double(), fb.double()
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    sa, sb = torch.cov(fa.T), torch.cov(fb.T)
    vals, vecs = torch.linalg.eigh(sa)
    sqrt_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    middle = torch.linalg.eigvalsh(sqrt_a @ sb @ sqrt_a).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).square().sum() + torch.trace(sa) + torch.trace(sb) - 2 * middle
    distance: float = value.item()
    return max(0.0, distance)


def kernel_distance(
    fa: torch.Tensor, fb: torch.Tensor, *, subset: int = 100, subsets: int = 20, seed: int = 0
) -> float:
    """Kernel Inception Distance formula (unbiased MMD^2, cubic polynomial kernel) in these features.

    Averaged over ``subsets`` random subsets of ``subset`` images per set
    (fewer when a set is smaller). Unbiased: about 0 for two samples of the
    same distribution (it can dip slightly below 0).
    """
    fa, fb = fa.double(), fb.double()
    dim = fa.shape[1]
    m = min(subset, len(fa), len(fb))
    if m < 2:
        raise ValueError("need at least two images per set")
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(subsets):
        a = fa[torch.randperm(len(fa), generator=gen)[:m]]
        b = fb[torch.randperm(len(fb), generator=gen)[:m]]
        kaa = (a @ a.T / dim + 1) ** 3
        kbb = (b @ b.T / dim + 1) ** 3
        kab = (a @ b.T / dim + 1) ** 3
        off = m * (m - 1)
        total += ((kaa.sum() - kaa.diag().sum()) / off + (kbb.sum() - kbb.diag().sum()) / off - 2 * kab.mean()).item()
    return total / subsets
