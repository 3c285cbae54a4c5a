"""The denoising U-Net: residual blocks, group norm, a sinusoidal time embedding,
self-attention on the small feature maps.

The layout follows DDPM (Ho et al. 2020) and ``diffusers.UNet2DModel``: per
level ``num_res_blocks`` residual blocks on the way down and one more on the
way up, each up block taking a skip connection; a middle of block-attention-block.
Residual blocks use the time embedding as a scale and shift of their second
group norm (Nichol & Dhariwal 2021).

``patch_size`` 2 folds each 2x2 pixel patch into channels before the first
convolution (and unfolds it after the last), so the network runs on a map a
quarter the size: about 4x cheaper, the way to fit a useful model into a small
CPU budget.

Two optional conditions are added to the time embedding (both absent by default, so an
unconditional network has exactly the layers and state-dict keys it always had):

* ``num_classes`` > 0: a class embedding ``nn.Embedding(num_classes + 1, ...)`` whose last row
  (index ``num_classes``) is the "no label" token. Trained with label dropout, one network
  gives both the conditional and the unconditional prediction that classifier-free guidance
  combines (Ho & Salimans 2022).
* ``augment_dim`` > 0: a bias-free linear embedding of the augmentation vector of
  :func:`apps.ml.engine.augment.conditioned_augment` (non-leaking augmentation, Karras et al. 2022). A
  zero vector (no augmentation; what sampling passes) adds exactly nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from apps.ml.engine.augment import AUGMENT_DIM


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of (float) timesteps [B]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _groups(channels: int, wanted: int) -> int:
    """The largest group count <= wanted that divides ``channels``."""
    for g in range(min(wanted, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def _zeroed(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv`` with its weight and bias set to zero (the layer then starts as adding nothing)."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class ResBlock(nn.Module):
    """GN-SiLU-conv, then GN scaled and shifted by the time embedding, SiLU-dropout-conv, plus skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, groups: int, emb_silu: bool = False):
        super().__init__()
        self.emb_silu = emb_silu
        self.norm1 = nn.GroupNorm(_groups(in_ch, groups), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch, groups), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zeroed(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb) if self.emb_silu else emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        skip: torch.Tensor = self.skip(x)
        return skip + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions of a feature map, plus skip."""

    def __init__(self, channels: int, head_channels: int, groups: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zeroed(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # [B, heads, HW, d]
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        projected: torch.Tensor = self.proj(out)
        return x + projected


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return out


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return out


class _Level(nn.Module):
    """The residual blocks (each with an optional attention block) of one U-Net level."""

    def __init__(
        self,
        channels: list[tuple[int, int]],
        emb_dim: int,
        dropout: float,
        groups: int,
        attention: bool,
        head_channels: int,
        emb_silu: bool = False,
    ):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(i, o, emb_dim, dropout, groups, emb_silu) for i, o in channels)
        self.attn = nn.ModuleList(
            AttentionBlock(o, head_channels, groups) if attention else nn.Identity() for _, o in channels
        )

    @staticmethod
    def blocks(level: nn.Module) -> Iterator[tuple[nn.Module, nn.Module]]:
        """The (residual block, attention block or identity) pairs of ``level``, a :class:`_Level` held in a
        ``ModuleList`` (which types its items as plain modules)."""
        level = cast(_Level, level)
        return zip(level.res, level.attn)


class UNet(nn.Module):
    """Predicts noise (or velocity) for a batch of noisy images.

    Args:
        image_channels: 1 (grayscale) or 3 (RGB).
        resolution: input height = width in pixels (32, 64, 128, or tiny for tests).
        base_channels: width of the first level; level i has ``base_channels * channel_mults[i]``.
        channel_mults: one entry per level; each level after the first halves the map.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_resolutions: feature-map sizes (in the network, after patching) with self-attention.
        dropout: dropout inside residual blocks (helps against copying small data sets).
        patch_size: 1, or 2 to fold 2x2 patches into channels first.
        num_classes: 0 (unconditional), or the number of classes of a class-conditional network.
        augment_dim: 0, or the length of the augmentation vector the network is conditioned on.
        emb_silu: a SiLU before each residual block's projection of the embedding (time + class +
            augmentation), as in ADM and diffusers; False: the layout of architecture version 1, where
            the time MLP's last Linear fed the projections directly (same layers and keys either way).
    """

    def __init__(
        self,
        *,
        image_channels: int,
        resolution: int,
        base_channels: int = 64,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.0,
        head_channels: int = 64,
        groups: int = 32,
        patch_size: int = 1,
        num_classes: int = 0,
        augment_dim: int = 0,
        emb_silu: bool = False,
    ):
        super().__init__()
        if resolution % patch_size:
            raise ValueError("resolution must be a multiple of patch_size")
        self.image_channels = image_channels
        self.patch_size = patch_size
        self.base_channels = base_channels
        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(image_channels * patch_size**2, base_channels, 3, padding=1)

        size = resolution // patch_size
        widths = [base_channels * m for m in channel_mults]
        skip_channels = [base_channels]
        ch = base_channels
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, width in enumerate(widths):
            pairs = []
            for _ in range(num_res_blocks):
                pairs.append((ch, width))
                ch = width
                skip_channels.append(ch)
            self.down.append(
                _Level(pairs, emb_dim, dropout, groups, size in attention_resolutions, head_channels, emb_silu)
            )
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else Downsample(ch))
            if not last:
                skip_channels.append(ch)
                size //= 2

        self.mid1 = ResBlock(ch, ch, emb_dim, dropout, groups, emb_silu)
        self.mid_attn = AttentionBlock(ch, head_channels, groups)
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout, groups, emb_silu)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            pairs = []
            for _ in range(num_res_blocks + 1):
                pairs.append((ch + skip_channels.pop(), width))
                ch = width
            self.up.append(
                _Level(pairs, emb_dim, dropout, groups, size in attention_resolutions, head_channels, emb_silu)
            )
            self.upsample.append(Upsample(ch) if i > 0 else nn.Identity())
            if i > 0:
                size *= 2

        self.norm_out = nn.GroupNorm(_groups(ch, groups), ch)
        self.conv_out = _zeroed(nn.Conv2d(ch, image_channels * patch_size**2, 3, padding=1))

        # Built last, so the layers above get the same initial weights as in an unconditional network.
        self.num_classes = num_classes
        self.augment_dim = augment_dim
        if num_classes < 0 or augment_dim < 0:
            raise ValueError("num_classes and augment_dim must be >= 0")
        if num_classes:
            self.label_embed = nn.Embedding(num_classes + 1, emb_dim)  # row num_classes: "no label"
        if augment_dim:
            self.augment_embed = nn.Linear(augment_dim, emb_dim, bias=False)

    @property
    def null_label(self) -> int:
        """The index of the "no label" token (the unconditional branch)."""
        return self.num_classes

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None, augment: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: [B, C, H, W] noisy images; t: [B] timesteps (any float). Returns [B, C, H, W].

        ``labels``: int64 [B] class indices of a conditional network, ``num_classes`` for "no
        label"; None is "no label" for every image. ``augment``: float [B, augment_dim], the
        augmentation each image went through; None is zeros (no augmentation).
        """
        emb = self.time_mlp(timestep_embedding(t, self.base_channels).to(x.dtype))
        if self.num_classes:
            if labels is None:
                labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label_embed(labels).to(emb.dtype)
        elif labels is not None:
            raise ValueError("this network is unconditional (num_classes 0): it takes no labels")
        if augment is not None:
            if not self.augment_dim:
                raise ValueError("this network is not conditioned on augmentation (augment_dim 0)")
            emb = emb + self.augment_embed(augment.to(emb.dtype))
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)
        h: torch.Tensor = self.conv_in(x)
        skips = [h]
        for level, down in zip(self.down, self.downsample):
            for res, attn in _Level.blocks(level):
                h = attn(res(h, emb))
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, up in zip(self.up, self.upsample):
            for res, attn in _Level.blocks(level):
                h = attn(res(torch.cat([h, skips.pop()], dim=1), emb))
            h = up(h)
        h = self.conv_out(F.silu(self.norm_out(h)))
        if self.patch_size > 1:
            h = F.pixel_shuffle(h, self.patch_size)
        return h


def build_unet(config: Mapping[str, Any]) -> UNet:
    """A U-Net from a generator config (the keys written by ``DDIM.default_config``).

    ``num_classes`` > 0 adds the class embedding; ``augment_p`` > 0 the augmentation embedding;
    ``architecture_version`` 2 the SiLU before the blocks' embedding projections (configs without
    these keys build the network they always did).
    """
    return UNet(
        image_channels=config["channels"],
        resolution=config["resolution"],
        base_channels=config["base_channels"],
        channel_mults=tuple(config["channel_mults"]),
        num_res_blocks=config["num_res_blocks"],
        attention_resolutions=tuple(config["attention_resolutions"]),
        dropout=config.get("dropout", 0.0),
        head_channels=config.get("head_channels", 64),
        groups=config.get("groups", 32),
        patch_size=config.get("patch_size", 1),
        num_classes=int(config.get("num_classes") or 0),
        augment_dim=AUGMENT_DIM if (config.get("augment_p") or 0) > 0 else 0,
        emb_silu=int(config.get("architecture_version") or 1) >= 2,
    )
