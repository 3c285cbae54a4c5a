"""How long training will take on this installation, before it starts.

A training's time is its steps (the preset's recipe, :func:`apps.ml.engine.config.build_config`) times the cost of one
step of its model shape on the device that trains it. That cost comes from, best first:

1. **past runs**: the training wall time per step of finished runs of the same type, resolution, channels,
   device class and model shape (:func:`shape_key`), the trainer's own clock (``TrainingRun.train_seconds``,
   checkpoints and sample grids included);
2. **a measurement**: a worker that trains (it consumes the ``gpu`` queue) times a few steps of every model
   shape the presets pick for its device, through the real trainer, one shape per low-priority task after it
   starts (:func:`measure_next`), and stores them as :class:`StepCost` rows.

Workers say they are up in :class:`WorkerPresence` (a row per worker process, beaten every
:data:`WORKER_BEAT_SECONDS`), so the wizard can say when no worker is up, and which device the training will get.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from apps.ml.engine import registry
from apps.ml.engine.base import PRESETS, RESOLUTIONS
from apps.ml.engine.config import ConfigError, build_config

from .models import StepCost, TrainingRun, WorkerPresence

log = logging.getLogger(__name__)

WORKER_BEAT_SECONDS = 30  # how often a worker writes WorkerPresence.seen_at
WORKER_GONE_SECONDS = 3 * WORKER_BEAT_SECONDS  # a worker not seen this long is taken to be down
TRAINING_QUEUE = "gpu"  # the queue the train stage goes to (CELERY_TASK_ROUTES)
# The dataset sizes the wizard (step 1, before the photos are known) gives times for: the two ends of what
# SynthGen is for (150-1,000 photos). The recipes' length grows with the photos (at most 2x).
WIZARD_IMAGE_COUNTS = (150, 1000)
PAST_RUNS = 20  # the newest matching runs an estimate reads

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


# ------------------------------------------------------------------------------------- shapes and recipes


def device_class(device: str) -> str:
    """ "cuda" for any CUDA device ("cuda:1"), else "cpu"."""
    return "cuda" if str(device).split(":")[0] == "cuda" else "cpu"


def shape_key(kind: str, config: dict) -> str:
    """What sets the cost of one training step of a ``kind`` config, as a short key (the config without
    COST_FREE_KEYS)."""
    shape = {key: value for key, value in dict(config).items() if key not in COST_FREE_KEYS}
    shape["kind"] = kind
    return hashlib.sha1(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]


def recipe(kind: str, *, resolution: int, channels: int, preset: str, image_count: int, device: str) -> dict:
    """The config the train stage builds for this request on a ``device``-class worker (the operator's
    overrides included), for ``image_count`` photos in the dataset (less the held-out ones, as training gets)."""
    from .evaluation import holdout_count

    return build_config(
        registry.get(kind),
        resolution=resolution,
        channels=channels,
        preset=preset,
        image_count=max(image_count - holdout_count(image_count), 0),
        device=device,
        overrides=settings.SYNTHGEN_TRAINING_OVERRIDES.get(kind, {}),
    )


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
    import torch

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
    import torch

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


# ------------------------------------------------------------------------------------- workers


def worker_started(*, holder: str, queues: list[str], device: str, name: str = "") -> WorkerPresence:
    now = timezone.now()
    worker, _ = WorkerPresence.objects.update_or_create(
        holder=holder,
        defaults={
            "host": holder.split(":")[0],
            "queues": sorted(queues),
            "device": device_class(device),
            "device_name": name,
            "started_at": now,
            "seen_at": now,
            "stopped_at": None,
        },
    )
    return worker


def worker_seen(holder: str) -> None:
    WorkerPresence.objects.filter(holder=holder, stopped_at__isnull=True).update(seen_at=timezone.now())


def worker_stopped(holder: str) -> None:
    WorkerPresence.objects.filter(holder=holder).update(stopped_at=timezone.now())
    # Rows of workers long gone are of no use to anyone.
    WorkerPresence.objects.filter(seen_at__lt=timezone.now() - timezone.timedelta(days=7)).delete()


def live_workers() -> list[WorkerPresence]:
    """The workers up now: not stopped, seen within WORKER_GONE_SECONDS."""
    recent = timezone.now() - timezone.timedelta(seconds=WORKER_GONE_SECONDS)
    return list(WorkerPresence.objects.filter(stopped_at__isnull=True, seen_at__gte=recent).order_by("-seen_at"))


def training_workers() -> list[WorkerPresence]:
    """The workers up now that train (they consume the training queue)."""
    return [worker for worker in live_workers() if TRAINING_QUEUE in worker.queues]


# ------------------------------------------------------------------------------------- estimating


@dataclass
class Estimate:
    seconds: float
    source: str  # where the cost per step comes from, in words


class Evidence:
    """What step costs rest on, read once: past runs' seconds per step and the workers' measurements, by type,
    resolution, channels, device class and shape."""

    RUNS_READ = 500  # the newest finished trainings read

    def __init__(self) -> None:
        self.runs: dict[tuple, list[float]] = {}
        runs = (
            TrainingRun.objects.filter(train_seconds__isnull=False, step__gt=0)
            .order_by("-finished_at", "-pk")
            .values_list(
                "generator__kind",
                "generator__resolution",
                "generator__channels",
                "device",
                "generator__config",
                "train_seconds",
                "step",
            )[: self.RUNS_READ]
        )
        for kind, resolution, channels, device, config, seconds, step in runs:
            key = (kind, resolution, channels, device_class(device), shape_key(kind, config or {}))
            per_step = self.runs.setdefault(key, [])
            if len(per_step) < PAST_RUNS:
                per_step.append(seconds / step)
        self.measured: dict[tuple, StepCost] = {}
        for cost in StepCost.objects.order_by("channels"):  # RGB (3) last: it wins the channel-free key
            self.measured[(cost.kind, cost.resolution, cost.channels, cost.device, cost.shape)] = cost
            self.measured[(cost.kind, cost.resolution, None, cost.device, cost.shape)] = cost

    def step_cost(self, kind: str, config: dict, device: str) -> tuple[float, str] | None:
        device = device_class(device)
        key = shape_key(kind, config)
        per_step = self.runs.get((kind, config["resolution"], config["channels"], device, key))
        if per_step:
            word = "run" if len(per_step) == 1 else "runs"
            return (
                statistics.median(per_step),
                f"from {len(per_step)} past {word} on this installation's {device} workers",
            )
        cost = self.measured.get((kind, config["resolution"], config["channels"], device, key)) or self.measured.get(
            (kind, config["resolution"], None, device, key)
        )  # grey costs about as RGB
        if cost is not None:
            on = f" ({cost.device_name})" if cost.device_name else ""
            return cost.seconds_per_step, f"measured on this installation's {device} worker{on}"
        return None


def step_cost(kind: str, config: dict, device: str, evidence: Evidence | None = None) -> tuple[float, str] | None:
    """Seconds per step of ``config`` on a ``device``-class worker and where the number comes from: past runs of
    the same shape (the median of the newest PAST_RUNS), else a worker's measurement; None when neither exists."""
    return (evidence or Evidence()).step_cost(kind, config, device)


def estimate(kind: str, config: dict, device: str, evidence: Evidence | None = None) -> Estimate | None:
    """The training time of ``config`` (its total_steps) on a ``device``-class worker; None when nothing is known."""
    found = step_cost(kind, config, device, evidence)
    if found is None:
        return None
    seconds, source = found
    return Estimate(seconds=seconds * int(config["total_steps"]), source=source)


def duration(seconds: float) -> str:
    """A duration in words: "40 s", "12 min", "2 h 5 min"."""
    seconds = max(float(seconds), 0.0)
    if seconds < 90:
        return f"{max(round(seconds), 1)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


PRESET_NAMES = {"": "Automatic", "quick": "Quick", "standard": "Standard", "long": "Long"}


@dataclass
class PresetTime:
    preset: str  # "" for automatic
    label: str  # e.g. "Quick"
    text: str  # e.g. "about 12 min (150 photos) to 24 min (1,000 photos)", or why there is none
    seconds: list[float] = field(default_factory=list)  # per WIZARD_IMAGE_COUNTS, where known
    sources: list[str] = field(default_factory=list)


@dataclass
class WizardTimes:
    """What step 1 of the wizard shows: the workers that train, and a time per training length for every
    type, resolution and device class."""

    workers: list[WorkerPresence]
    devices: list[str]  # the device classes the times are for
    status: str  # a sentence about the workers
    up: bool
    tables: list[dict]  # {"kind", "resolution", "device", "rows": [PresetTime]}


def wizard_times(*, channels: int = 3) -> WizardTimes:
    """For step 1 (the photos are not known yet: ``channels`` 3, WIZARD_IMAGE_COUNTS photos): the training time of
    each length for every type and size on each device class of the workers that train, or, when none is up, of
    the device classes measured or trained on before."""
    from .services import suggest_preset

    workers = training_workers()
    devices = sorted({worker.device for worker in workers}, key=lambda d: d != "cuda")
    if workers:
        names = "; ".join(sorted({f"{w.host} ({w.device_name or w.device})" for w in workers}))
        status = (
            f"{len(workers)} worker{'s' if len(workers) != 1 else ''} that train{'s' if len(workers) == 1 else ''} "
            f"{'is' if len(workers) == 1 else 'are'} up: {names}."
        )
    else:
        # No worker: the times of the device classes measured or trained on before, if any.
        seen = set(StepCost.objects.values_list("device", flat=True)) | {
            device_class(d)
            for d in TrainingRun.objects.filter(train_seconds__isnull=False)
            .order_by()
            .values_list("device", flat=True)
            .distinct()
        }
        devices = sorted(seen, key=lambda d: d != "cuda")
        others = live_workers()
        status = (
            "No worker is up"
            if not others
            else f"No worker that trains is up (the {len(others)} up take{'s' if len(others) == 1 else ''} no "
            f"'{TRAINING_QUEUE}' queue)"
        )
        status += ": training will wait in the queue until one starts (make run, or make worker). " + (
            "The times below are from the workers seen before." if devices else ""
        )
    tables = []
    evidence = Evidence()
    for device in devices:
        for kind in registry.all_types():
            for resolution in RESOLUTIONS:
                rows = []
                for preset in ("", *PRESETS):
                    rows.append(_preset_time(kind, resolution, channels, preset, device, suggest_preset, evidence))
                sources = {tuple(row.sources) for row in rows if row.sources}
                common = " and ".join(sources.pop()) if len(sources) == 1 else ""  # said once under the table
                tables.append(
                    {
                        "kind": kind,
                        "label": registry.get(kind).label,
                        "resolution": resolution,
                        "device": device,
                        "rows": rows,
                        "source": common,
                    }
                )
    return WizardTimes(workers=workers, devices=devices, status=status, up=bool(workers), tables=tables)


def _preset_time(kind, resolution, channels, preset, device, suggest_preset, evidence) -> PresetTime:
    row = PresetTime(preset=preset, label=PRESET_NAMES.get(preset, preset), text="")
    for count in WIZARD_IMAGE_COUNTS:
        try:
            config = recipe(
                kind,
                resolution=resolution,
                channels=channels,
                preset=preset or suggest_preset(count, kind),
                image_count=count,
                device=device,
            )
        except (ConfigError, ValueError):
            continue
        found = estimate(kind, config, device, evidence)
        if found is None:
            row.text = f"not measured yet on the {device} worker"
            return row
        row.seconds.append(found.seconds)
        if found.source not in row.sources:
            row.sources.append(found.source)
    if not row.seconds:
        row.text = "no recipe for this size"
        return row
    low, high = row.seconds[0], row.seconds[-1]
    if duration(low) == duration(high):
        row.text = f"about {duration(low)}"
    else:
        row.text = (
            f"about {duration(low)} ({WIZARD_IMAGE_COUNTS[0]:,} photos) to {duration(high)} "
            f"({WIZARD_IMAGE_COUNTS[-1]:,} photos)"
        )
    return row


# ------------------------------------------------------------------------------------- runs


def store_run_estimate(run_id: int, kind: str, config: dict, device: str) -> None:
    """Called when training starts: the run's expected training time and its source, once (a resumed run keeps
    the estimate it started with, so the comparison with the actual time holds)."""
    found = estimate(kind, config, device)
    if found is not None:
        TrainingRun.objects.filter(pk=run_id, estimated_seconds__isnull=True).update(
            estimated_seconds=round(found.seconds, 1), estimate_source=found.source
        )


def run_comparison(run: TrainingRun) -> str:
    """The run page's line: the estimate against the time training took (or is taking); "" without an estimate."""
    if run.estimated_seconds is None:
        return ""
    line = f"Training estimated {duration(run.estimated_seconds)} ({run.estimate_source})"
    if run.train_seconds is not None:
        return f"{line}; took {duration(run.train_seconds)}."
    return f"{line}."
