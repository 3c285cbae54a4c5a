"""How long training will take on this installation, before it starts.

A training's time is its steps (the preset's recipe, :func:`apps.generators.recipes.recipe`) times the cost of one
step of its model shape on the device that trains it. That cost comes from, best first:

1. **past runs**: the training wall time per step of finished runs of the same type, resolution, channels,
   device class and model shape (:func:`~apps.generators.step_costs.shape_key`), the trainer's own clock
   (``TrainingRun.train_seconds``, checkpoints and sample grids included);
2. **a measurement**: what a worker that trains timed for the shape on its device (step_costs.py).

The wizard also says which workers that train are up (presence.py).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from apps.ml.engine import registry
from apps.ml.engine.base import PRESETS, RESOLUTIONS
from apps.ml.engine.config import ConfigError

from .models import StepCost, TrainingRun, WorkerPresence
from .presence import TRAINING_QUEUE, live_workers, training_workers
from .recipes import recipe, suggest_preset
from .step_costs import WIZARD_IMAGE_COUNTS, device_class, shape_key

PAST_RUNS = 20  # the newest matching runs an estimate reads


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
                    rows.append(_preset_time(kind, resolution, channels, preset, device, evidence))
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


def _preset_time(kind, resolution, channels, preset, device, evidence) -> PresetTime:
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
