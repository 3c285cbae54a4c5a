"""Exponential moving average (EMA) of a network's weights: what both generator types sample from.

Generators sample far better from averaged weights than from the raw ones. The decay warms up as
``min(decay, (1 + step) / (10 + step))`` so a short run is not dominated by its random initial
weights. Buffers (e.g. BatchNorm statistics) are copied, not averaged; a type that needs other
statistics for its averaged network (the DCGAN generator) recomputes them before sampling.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def decay_for_half_life(steps: float) -> float:
    """The per-step decay whose weights halve every ``steps`` steps."""
    return float(0.5 ** (1.0 / steps))


class EMA:
    """Holds ``model``: a frozen copy of the trained network whose weights track its running average.

    The update uses foreach kernels and reads nothing back to the host.
    """

    def __init__(self, source: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.model = copy.deepcopy(source).eval()
        self.model.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, source: nn.Module, step: int) -> None:
        """Move the averaged weights towards ``source``'s after optimizer step ``step`` (0 for the first)."""
        ema_params: list[torch.Tensor] = list(self.model.parameters())
        src_params = [p.detach() for p in source.parameters()]
        torch._foreach_lerp_(ema_params, src_params, 1.0 - self.decay_at(step))
        for ema_buf, src_buf in zip(self.model.buffers(), source.buffers()):
            ema_buf.copy_(src_buf)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
