"""Realism and coverage of generated images, each next to what new real photos score at the same size.

In a feature space (the report's small CNN, :class:`metrics.FeatureNet`), every
real photo gets a ball reaching to its k-th nearest real neighbour; together the
balls sketch where real photos of the class lie. Four numbers compare a set of
generated images with them:

- **precision** (Kynkaenniemi et al. 2019): share of generated images inside some
  real ball - are they realistic;
- **recall**: share of real photos inside some generated image's ball - do the
  generated images reach everywhere the real ones are;
- **density** (Naeem et al. 2020): how many real balls a generated image sits in,
  on average, over k (about 1 for real photos; robust to outliers);
- **coverage** (Naeem et al. 2020): share of real balls holding at least one
  generated image - dropped modes lower it.

All four depend on the set sizes, so :func:`matched` always compares like with
like: the generated images are subsampled to the size of the real side, and the
``reference`` (what genuinely new real photos score) is measured with real photos
subsampled to the same size, each repeated; both come as mean +- std.
"""

from __future__ import annotations

import statistics

import torch

K = 3  # neighbours that set a real photo's ball (small sets: Naeem et al. use 5 on thousands)
REPEATS = 20
NAMES = ("precision", "recall", "density", "coverage")


def _radii(features: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(features, features)
    d.fill_diagonal_(float("inf"))
    return d.kthvalue(k, dim=1).values


def prdc(real: torch.Tensor, fake: torch.Tensor, *, k: int = K) -> dict[str, float]:
    """Precision, recall, density and coverage of feature set ``fake`` against ``real`` ([N, D] each)."""
    k = max(1, min(k, len(real) - 1, len(fake) - 1))
    real_r, fake_r = _radii(real, k), _radii(fake, k)
    d = torch.cdist(real, fake)  # [R, F]
    inside_real = d < real_r[:, None]
    return {
        "precision": inside_real.any(dim=0).double().mean().item(),
        "recall": (d < fake_r[None, :]).any(dim=1).double().mean().item(),
        "density": inside_real.sum(dim=0).double().mean().item() / k,
        "coverage": (d.min(dim=1).values < real_r).double().mean().item(),
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def matched(
    real: torch.Tensor, generated: torch.Tensor, reference: torch.Tensor, *, repeats: int = REPEATS, seed: int = 0
) -> dict[str, dict[str, float]]:
    """:func:`prdc` of ``generated`` and of ``reference`` (other real photos) against ``real``, at one size.

    Each repeat draws ``len(real)`` images (or all there are) from ``generated`` and from
    ``reference``. Returns ``{name: {"value", "std", "reference", "reference_std", "images"}}``.
    """
    if len(real) < 3 or len(generated) < 3 or len(reference) < 3:
        raise ValueError("need at least three images on every side")
    gen = torch.Generator().manual_seed(seed)
    n = len(real)
    runs: dict[str, list[float]] = {f"{name}{side}": [] for name in NAMES for side in ("", "_ref")}
    for _ in range(repeats):
        g = generated[torch.randperm(len(generated), generator=gen)[:n]]
        r = reference[torch.randperm(len(reference), generator=gen)[:n]]
        for side, fake in (("", g), ("_ref", r)):
            for name, value in prdc(real, fake).items():
                runs[f"{name}{side}"].append(value)
    out: dict[str, dict[str, float]] = {}
    for name in NAMES:
        value, std = _mean_std(runs[name])
        ref, ref_std = _mean_std(runs[f"{name}_ref"])
        out[name] = {
            "value": value,
            "std": std,
            "reference": ref,
            "reference_std": ref_std,
            "images": min(n, len(generated)),
        }
    return out
