"""Which torch device the generators run on."""

from __future__ import annotations

import os

import torch

ENV_VAR = "SYNTHGEN_DEVICE"


def pick_device() -> str:
    """The device to train and sample on, as a string torch understands.

    ``SYNTHGEN_DEVICE`` (for example ``cpu``, ``cuda`` or ``cuda:1``) wins when
    set; otherwise ``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``.
    A CUDA device asked for on a machine without CUDA is an error, not a
    silent fall-back, so a misconfigured GPU worker fails loudly.
    """
    wanted = os.environ.get(ENV_VAR, "").strip()
    if wanted:
        device = torch.device(wanted)  # raises on nonsense such as "gpu0"
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"{ENV_VAR}={wanted!r} but CUDA is not available on this machine")
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_class() -> str:
    """``"cuda"`` or ``"cpu"``: the kind of device :func:`pick_device` gives on this machine, for choosing
    a recipe. Never raises (a misconfigured ``SYNTHGEN_DEVICE`` fails where training starts)."""
    wanted = os.environ.get(ENV_VAR, "").strip()
    if wanted:
        return "cuda" if wanted.split(":")[0] == "cuda" else "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # private helpers: treat a torch without them as "no"
        return False
