"""Fine-tuning: a training run that starts from another generator's weights (the "base"). Django-free.

The child's config comes from :func:`apps.ml.engine.config.build_config` with ``base=`` the base's config: the
base's model shape (``TrainingConfig.BASE_SHAPE``) and the type's fine-tuning recipe
(``TrainingConfig.for_base``: fewer steps, and the type's learning rates and warm-up), before the user's options.
Its networks start from the base's weights: :func:`read_base` reads the base's files (safetensors only),
:func:`start_from` hands them to the type (``GeneratorType.start_weights``), which loads them into the fresh
networks its ``training_parts`` builds (a resumed run loads its checkpoint over them, as always).

Weight surgery lives here:

* :func:`remap_class_rows`: a class-conditional DDIM's class embedding mapped by class *name*: a class of the
  new dataset the base knows keeps its row; a new class gets a copy of the base's "no label" row (so it starts
  as the base's unconditional model, which guidance then pulls away from); the "no label" row stays the base's.
  An unconditional base gives every row zeros (the child starts as exactly the base); an unconditional child of a
  conditional base folds the "no label" row into the time embedding's last bias (exactly the base's
  unconditional prediction).
* :func:`freeze_blocks`: FreezeD (Mo et al. 2020): the discriminator's first blocks keep the base's weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apps.ml.engine.base import CONFIG_FILE, WEIGHTS_FILE, GeneratorType
from apps.ml.engine.checkpoint import load_json, load_tensors

DISCRIMINATOR_FILE = "discriminator.safetensors"  # a DCGAN's discriminator (saved since fine-tuning exists)
BASE_FILES = (WEIGHTS_FILE, CONFIG_FILE, DISCRIMINATOR_FILE)  # what a child needs of its base (the last optional)

LABEL_EMBED = "label_embed.weight"
TIME_BIAS = "time_mlp.2.bias"  # the last layer of the DDIM U-Net's time MLP: where the class embedding is added


@dataclass
class Base:
    """A base generator's files: its config and its tensors per file (safetensors, never pickles)."""

    config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor] | None = None
    notes: list[str] = field(default_factory=list)

    def recipe_config(self) -> dict[str, Any]:
        """What ``build_config(base=...)`` reads: the base's config, and whether its discriminator is there."""
        return {**self.config, "has_discriminator": self.discriminator is not None}


def read_base(directory: Path) -> Base:
    """The base generator saved in ``directory`` (``weights.safetensors``, ``config.json``, and a DCGAN's
    ``discriminator.safetensors`` where it was saved)."""
    directory = Path(directory)
    discriminator = directory / DISCRIMINATOR_FILE
    return Base(
        config=load_json(directory / CONFIG_FILE),
        weights=load_tensors(directory / WEIGHTS_FILE),
        discriminator=load_tensors(discriminator) if discriminator.exists() else None,
    )


def start_from(model: GeneratorType, base: Base) -> dict[str, dict[str, torch.Tensor]]:
    """Make ``model`` (a :class:`~apps.ml.engine.base.GeneratorType` built with the child's config) start training
    from ``base``: the type turns the base's tensors into the weights of each of its networks
    (``weights_from_base``); returns them (also kept as ``model.start_weights``)."""
    weights = model.weights_from_base(base)
    model.start_weights = weights
    return weights


# ---------------------------------------------------------------- DDIM: class rows


def remap_class_rows(
    state: dict[str, torch.Tensor], *, base_classes: list[str], base_num_classes: int, classes: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """A DDIM U-Net's state dict for the classes ``classes`` (the child's, label order) from a base that
    learnt ``base_num_classes`` classes named ``base_classes`` (may be empty: names unknown, every class is new).

    Returns the new state dict and ``{"kept": [...], "new": [...]}`` (class names)."""
    state = dict(state)
    has_rows = LABEL_EMBED in state
    if bool(has_rows) != bool(base_num_classes):
        raise ValueError(
            f"the base's weights {'have' if has_rows else 'lack'} a class embedding, but its config "
            f"says {base_num_classes} classes"
        )
    kept: list[str] = []
    new: list[str] = []
    if not classes:  # an unconditional child
        if has_rows:  # fold the base's "no label" row into the time embedding: the base's unconditional model
            rows = state.pop(LABEL_EMBED)
            state[TIME_BIAS] = state[TIME_BIAS] + rows[base_num_classes].to(state[TIME_BIAS].dtype)
        return state, {"kept": kept, "new": new}
    bias = state[TIME_BIAS]
    if not has_rows:  # an unconditional base: every row zeros, so the child starts as exactly the base
        state[LABEL_EMBED] = torch.zeros(len(classes) + 1, bias.shape[0], dtype=bias.dtype)
        return state, {"kept": kept, "new": list(classes)}
    rows = state[LABEL_EMBED]
    null = rows[base_num_classes]
    index = {name: i for i, name in enumerate(base_classes or []) if i < base_num_classes}
    out = torch.empty(len(classes) + 1, rows.shape[1], dtype=rows.dtype)
    for i, name in enumerate(classes):
        if name in index:
            out[i] = rows[index[name]]
            kept.append(name)
        else:
            out[i] = null
            new.append(name)
    out[len(classes)] = null
    state[LABEL_EMBED] = out
    return state, {"kept": kept, "new": new}


# ---------------------------------------------------------------- DCGAN: FreezeD


def freeze_blocks(network: nn.Module, layers: list[nn.Module]) -> list[str]:
    """Freeze ``layers`` (modules of ``network``): their parameters take no gradient. Returns the frozen
    parameters' names; :func:`trainable` re-enables the others only."""
    frozen_ids = {id(p) for layer in layers for p in layer.parameters()}
    names = []
    for name, parameter in network.named_parameters():
        if id(parameter) in frozen_ids:
            parameter.requires_grad_(False)
            names.append(name)
    return names


def trainable(network: nn.Module, frozen: set[str] | list[str]) -> None:
    """Let every parameter of ``network`` but the ``frozen`` ones take gradients again."""
    frozen = set(frozen)
    for name, parameter in network.named_parameters():
        parameter.requires_grad_(name not in frozen)
