"""Crash-safe files: write to a temporary file, fsync, then rename into place."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def _write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary path)`` beside ``path``, fsync it, then rename it into place and fsync the folder:
    a crash at any point leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_tensors_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors; a crash mid-write leaves the old file intact."""
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _write_atomic(path, lambda tmp: save_file(contiguous, tmp, metadata=metadata))


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def save_json_atomic(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` as indented JSON with sorted keys; a crash mid-write leaves the old file intact."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)

    _write_atomic(path, write)


def load_json(path: Path) -> dict[str, Any]:
    with open(path) as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def flatten_state(prefix: str, state: dict[Any, Any]) -> dict[str, torch.Tensor]:
    """Flatten a module/optimizer state dict into name -> tensor for safetensors.

    Non-tensor optimizer entries (step counts, hyper-parameters) are stored as
    0-d tensors where numeric; ``param_groups`` are rebuilt by the optimizer. Keys may be parameter
    indices (an optimizer's ``state``), written as text.
    """
    flat: dict[str, torch.Tensor] = {}

    def walk(key: str, value: object) -> None:
        if isinstance(value, torch.Tensor):
            flat[key] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{key}.{k}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = torch.tensor(value, dtype=torch.float64)

    for k, v in state.items():
        walk(f"{prefix}.{k}" if prefix else str(k), v)
    return flat
