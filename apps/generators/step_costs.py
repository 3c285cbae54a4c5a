"""What one training step costs on this installation's workers, measured before any run.

A training's time is its steps (the preset's recipe, :func:`apps.generators.recipes.recipe`) times the cost of one
step of its model shape (:func:`shape_key`) on the device that trains it. A worker that trains (it consumes the
``gpu`` queue) times a few steps of every model shape the presets pick for its device, through the real trainer,
one shape per low-priority task after it starts (:func:`measure_next`), and stores them as :class:`StepCost` rows;
estimates.py turns them, and past runs' times, into the times the pages show.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import tempfile
import time
from pathlib import Path

import torch
from django.utils import timezone

from apps.ml.engine import registry
from apps.ml.engine.base import PRESETS, RESOLUTIONS
from apps.ml.engine.config import ConfigError

from .models import StepCost
from .recipes import recipe

log = logging.getLogger(__name__)

# The dataset sizes the wizard (step 1, before the photos are known) gives times for: the two ends of what
# SynthGen is for (150-1,000 photos). The recipes' length grows with the photos (at most 2x).
WIZARD_IMAGE_COUNTS = (150, 1000)

# Config keys that do not change what one training step costs: the length and schedule of the training, the
# seeds, learning rates, the grids and sampling, the class names. Every other key (network width and depth,
# batch size, regularisation, precision, compilation) is part of the shape: a change there is a new cost.
COST_FREE_KEYS = frozenset(
    {
        "preset",
        "image_count",
        "total_steps",
        "checkpoint_every",
        "report_every",
        "seed",
        "ema_half_life_steps",
        "dropout",
        "learning_rate",
        "lr_g",
        "lr_d",
        "beta1",
        "beta2",
        "warmup_steps",
        "final_lr_fraction",
        "weight_decay",
        "ema_decay",
        "real_label",
        "min_snr_gamma",
        "min_snr_plus_one",
        "schedule_shift",
        "hflip",
        "augment_flip",
        "grid_images",
        "grid_steps",
        "sampler",
        "sampling_steps",
        "guidance_scale",
        "cpu_sampling_bf16",
        "classes",
        "num_classes",
        "class_balanced",
        "label_dropout",
        "grad_clip",
    }
)


# ------------------------------------------------------------------------------------- shapes


def device_class(device: str) -> str:
    """ "cuda" for any CUDA device ("cuda:1"), else "cpu"."""
    return "cuda" if str(device).split(":")[0] == "cuda" else "cpu"


def shape_key(kind: str, config: dict) -> str:
    """What sets the cost of one training step of a ``kind`` config, as a short key (the config without
    COST_FREE_KEYS)."""
    shape = {key: value for key, value in dict(config).items() if key not in COST_FREE_KEYS}
    shape["kind"] = kind
    return hashlib.sha1(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]


def measured_shapes(device: str) -> list[tuple[str, dict]]:
    """Every distinct model shape the presets pick on a ``device``-class worker (RGB; every type, resolution,
    preset and the wizard's dataset sizes): what a worker measures."""
    shapes: dict[tuple, dict] = {}
    for kind in registry.all_types():
        for resolution in RESOLUTIONS:
            for preset in PRESETS:
                for count in WIZARD_IMAGE_COUNTS:
                    try:
                        config = recipe(
                            kind, resolution=resolution, channels=3, preset=preset, image_count=count, device=device
                        )
                    except (ConfigError, ValueError):
                        continue
                    shapes.setdefault((kind, resolution, shape_key(kind, config)), (kind, config))
    return list(shapes.values())


# ------------------------------------------------------------------------------------- measuring


class _Enough(Exception):
    """Raised from the trainer's progress callback when the steps are timed: the run ends without its checkpoint."""


def measure_step_cost(
    kind: str,
    config: dict,
    device: str,
    *,
    steps: int | None = None,
    warmup: int | None = None,
    budget: float | None = 2.0,
    should_stop=None,
) -> tuple[float, int] | None:
    """Seconds per training step of ``config`` (a ``kind`` recipe) on ``device``, and the steps timed: random images
    through the real trainer (GeneratorType.train: its loop, reseeding, EMA, loss reads), timed between its
    progress reports after ``warmup`` steps (first calls, compilation). ``steps`` (default 4 on a CPU, 20 on a
    GPU: a multiple of 4, so that the DCGAN's R1 penalty, every 4 steps, counts as in training) are timed, or
    fewer once ``budget`` seconds have been timed (a slow shape on a CPU: at least one step); then the run ends
    without writing its checkpoint. None when ``should_stop()`` (the worker is stopping) cut it short."""
    cuda = device_class(device) == "cuda"
    steps = steps or (20 if cuda else 4)
    warmup = warmup if warmup is not None else (3 if cuda else 1)
    total = warmup + steps + 1
    model = registry.get(kind)(
        {**config, "total_steps": total, "report_every": 1, "checkpoint_every": total}, device=device
    )
    count = max(int(config["batch_size"]), 8)
    images = (
        torch.rand(
            count,
            config["channels"],
            config["resolution"],
            config["resolution"],
            generator=torch.Generator().manual_seed(0),
        )
        * 2
        - 1
    )
    times: dict[int, float] = {}
    stopped = []

    def on_progress(progress) -> None:
        if should_stop is not None and should_stop():
            stopped.append(True)
            raise _Enough()
        if progress.step < warmup:
            return
        times[progress.step] = now = time.perf_counter()
        timed = progress.step - warmup
        if timed >= steps or (budget is not None and timed >= 1 and now - times[warmup] >= budget):
            raise _Enough()

    with tempfile.TemporaryDirectory(prefix="synthgen-measure-") as folder:
        try:
            model.train(images, checkpoint_dir=Path(folder), on_progress=on_progress)
        except _Enough:
            pass
    last = max(times, default=0)
    if stopped or last <= warmup:
        return None
    return (times[last] - times[warmup]) / (last - warmup), last - warmup


def device_name(device: str) -> str:
    """The device in words, for the page: the GPU's name, or the CPU threads PyTorch uses."""
    if device_class(device) == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    threads = torch.get_num_threads()
    return f"{threads} CPU thread{'s' if threads != 1 else ''}"


def record_step_cost(
    kind: str, config: dict, device: str, seconds_per_step: float, *, steps: int, name: str = ""
) -> StepCost:
    """Store a measured cost for ``config``'s shape on a ``device``-class worker (the newest replaces the older)."""
    cost, _ = StepCost.objects.update_or_create(
        kind=kind,
        resolution=config["resolution"],
        channels=config["channels"],
        device=device_class(device),
        shape=shape_key(kind, config),
        defaults={
            "seconds_per_step": seconds_per_step,
            "steps": steps,
            "host": socket.gethostname(),
            "device_name": name,
            "measured_at": timezone.now(),
        },
    )
    return cost


def unmeasured_shapes(device: str) -> list[tuple[str, dict]]:
    """The shapes of :func:`measured_shapes` without a StepCost row for this device class."""
    known = set(
        StepCost.objects.filter(device=device_class(device)).values_list("kind", "resolution", "channels", "shape")
    )
    return [
        (kind, config)
        for kind, config in measured_shapes(device_class(device))
        if (kind, config["resolution"], config["channels"], shape_key(kind, config)) not in known
    ]


def measure_next(device: str, should_stop=None) -> bool:
    """Measure one shape not measured yet on this device class and store it; False when none is left (or
    ``should_stop()`` cut the measurement short)."""
    missing = unmeasured_shapes(device)
    if not missing:
        return False
    kind, config = missing[0]
    started = time.perf_counter()
    measured = measure_step_cost(kind, config, device, should_stop=should_stop)
    if measured is None:
        return False
    seconds, steps = measured
    record_step_cost(kind, config, device, seconds, steps=steps, name=device_name(device))
    log.info(
        "measured %s %spx on %s: %.4f s per step (%s steps, in %.1f s)",
        kind,
        config["resolution"],
        device,
        seconds,
        steps,
        time.perf_counter() - started,
    )
    return True
