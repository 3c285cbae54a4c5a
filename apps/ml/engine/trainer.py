"""The one training loop every generator type trains with.

A type supplies its networks and optimizers (:class:`~apps.ml.engine.training.TrainingParts`), one training
step, its architecture keys and the images of a sample grid (the hooks of
:class:`~apps.ml.engine.base.GeneratorType`, as :class:`~apps.ml.engine.training.Trainable` names them: the
trainer needs nothing else of the type). The :class:`Trainer` owns everything around them:

* **progress**: a report every ``report_every`` steps and at every checkpoint. Losses stay on the
  device, summed, and are read back only at reports, so a GPU never waits on the host in between;
* **cancel**: ``should_stop()`` is called before every step (the caller rate-limits itself); a stop
  writes a final checkpoint;
* **checkpoints**: every ``checkpoint_every`` steps and at the end, one safetensors file written
  atomically (networks, EMA, optimizer states; the run's state as JSON in its metadata), and a
  sample grid ``samples/step_NNNNNN.png``;
* **resume** from that file, refused with a ValueError when it was written for another architecture;
* **reproducibility**: the randomness of step ``s`` comes only from ``(seed, s)``: the step's
  generator and the global RNG (dropout) are reseeded before every step, so a resumed run trains
  exactly the weights of an uninterrupted one. The caller's global RNG is left as it was;
* **EMA**: the averaged copy of one network is updated after every step;
* **labels**: ``run(images, labels=...)`` hands a class label per image to the type's
  ``training_data``, which returns :class:`~apps.ml.engine.training.LabelledImages` for its ``training_step``
  (a type that learns no classes refuses labels). Nothing else in the loop changes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from apps.ml.engine.checkpoint import flatten_state, load_tensors, save_tensors_atomic
from apps.ml.engine.images import save_grid
from apps.ml.engine.training import (
    ProgressCallback,
    StopCheck,
    Trainable,
    TrainingData,
    TrainingParts,
    TrainProgress,
    TrainResult,
)

CHECKPOINT_FILE = "checkpoint.safetensors"
SAMPLES_DIR = "samples"
_SEED_STRIDE = 1_000_003  # seeds of one run's steps: seed * stride + step
_GLOBAL_SEED_OFFSET = 500_009  # the global RNG's stream differs from the step generator's


def checkpoint_step(checkpoint_dir: Path) -> int:
    """The step of the checkpoint in ``checkpoint_dir`` (what a run resumes from); 0 when there is none."""
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    saved = _saved_state(path) if path.exists() else None
    return int(saved["step"]) if saved else 0


def _saved_state(path: Path) -> dict[str, Any] | None:
    """The run's state a checkpoint holds in its metadata (step, seconds, losses, architecture); None without."""
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
    return json.loads(metadata["state"]) if "state" in metadata else None


def grid_path(checkpoint_dir: Path, step: int) -> Path:
    """Where the sample grid of ``step`` is written: one naming scheme for every type."""
    return Path(checkpoint_dir) / SAMPLES_DIR / f"step_{step:06d}.png"


@dataclass
class RunState:
    """The run's progress besides the tensors; saved as JSON in the checkpoint."""

    step: int = 0
    seconds: float = 0.0  # training wall time over all sessions of the run
    losses: dict[str, float] = field(default_factory=dict)  # the newest report's
    warnings: list[str] = field(default_factory=list)  # every warning a checkpoint check raised
    latest_warnings: list[str] = field(default_factory=list)  # the newest check's


class Trainer:
    """Trains one generator type's parts on a set of images, resumably, in ``checkpoint_dir``."""

    def __init__(self, generator_type: Trainable, checkpoint_dir: Path):
        self.type = generator_type
        self.dir = Path(checkpoint_dir)
        self.device = generator_type.device
        config = generator_type.config
        self.total = int(config["total_steps"])
        self.report_every = max(1, int(config["report_every"]))
        self.checkpoint_every = max(1, int(config["checkpoint_every"]))
        self.seed = int(config["seed"])

    # ------------------------------------------------------------ the loop

    def run(
        self,
        images: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> TrainResult:
        """Train on ``images`` (and, for a type that learns classes, their ``labels``: int [N])."""
        # The type turns images (and labels) into what its training_step draws batches from.
        data = self.type.training_data(images) if labels is None else self.type.training_data(images, labels=labels)
        parts, state = self._resume() or (self.type.training_parts(), RunState())
        self.on_progress: ProgressCallback | None = on_progress
        with torch.random.fork_rng(devices=self._cuda_devices()):
            stopped = self._loop(parts, state, data, should_stop)
        self.type.finish_training(parts, state.step)
        return TrainResult(
            steps=state.step,
            seconds=state.seconds,
            final_losses=dict(state.losses),
            warnings=self.type.result_warnings(state.latest_warnings, state.warnings),
            stopped_early=stopped,
        )

    def _loop(self, parts: TrainingParts, state: RunState, data: TrainingData, should_stop: StopCheck | None) -> bool:
        """Train until ``total_steps`` or a stop; returns whether it stopped early."""
        started, seconds_before = time.perf_counter(), state.seconds
        saved_at = state.step
        sums = _LossSums()
        rng = torch.Generator(device=self.device)
        stopped = False
        while state.step < self.total:
            if should_stop is not None and should_stop():
                stopped = True
                break
            self._reseed(rng, state.step)
            losses = self.type.training_step(parts, data, state.step, rng)
            if parts.ema is not None and parts.ema_of is not None:
                parts.ema.update(parts.networks[parts.ema_of], state.step)
            sums.add(losses)
            state.step += 1

            checkpoint_now = state.step % self.checkpoint_every == 0 or state.step == self.total
            if checkpoint_now or state.step % self.report_every == 0:
                state.losses = sums.read_and_reset()  # the only host sync
            if checkpoint_now:
                state.seconds = seconds_before + time.perf_counter() - started
                self._report(state, self._checkpoint(parts, state))
                saved_at = state.step
            elif state.step % self.report_every == 0:
                self._report(state, None)
        state.seconds = seconds_before + time.perf_counter() - started
        if stopped and state.step != saved_at:
            state.losses = sums.read_and_reset() or state.losses
            self._report(state, self._checkpoint(parts, state))
        return stopped

    def _report(self, state: RunState, grid: Path | None) -> None:
        if self.on_progress is None:
            return
        self.on_progress(
            TrainProgress(
                step=state.step,
                total_steps=self.total,
                losses=dict(state.losses),
                sample_grid=grid,
                checkpointed=grid is not None,
                warnings=list(state.latest_warnings) if grid is not None else [],
            )
        )

    # ------------------------------------------------------------ randomness

    def _cuda_devices(self) -> list[int]:
        if self.device.type != "cuda":
            return []
        return [self.device.index if self.device.index is not None else torch.cuda.current_device()]

    def _reseed(self, rng: torch.Generator, step: int) -> None:
        """Seed the step's generator and the global RNG (dropout) from the run's seed and ``step``."""
        seed = self.seed * _SEED_STRIDE + step
        rng.manual_seed(seed)
        torch.default_generator.manual_seed(seed + _GLOBAL_SEED_OFFSET)
        for index in self._cuda_devices():
            torch.cuda.default_generators[index].manual_seed(seed + _GLOBAL_SEED_OFFSET)

    # ------------------------------------------------------------ checkpoints

    def _checkpoint(self, parts: TrainingParts, state: RunState) -> Path:
        """Sample grid, the type's check of it, then one atomic checkpoint file; returns the grid's path."""
        samples = self.type.grid_samples(parts, state.step)
        grid = save_grid(samples, grid_path(self.dir, state.step))
        state.latest_warnings = list(self.type.check_samples(parts, state.step, samples))
        state.warnings.extend(state.latest_warnings)
        tensors: dict[str, torch.Tensor] = {}
        for name, network in parts.networks.items():
            tensors.update(flatten_state(name, network.state_dict()))
        for name, optimizer in parts.optimizers.items():
            tensors.update(flatten_state(f"opt_{name}", optimizer.state_dict()["state"]))
        if parts.ema is not None:
            tensors.update(flatten_state("ema", parts.ema.state_dict()))
        metadata = {
            "step": state.step,
            "seconds": state.seconds,
            "losses": state.losses,
            "warnings": state.warnings,
            "latest_warnings": state.latest_warnings,
            "architecture": _as_json(self.type.architecture()),
        }
        save_tensors_atomic(tensors, self.dir / CHECKPOINT_FILE, metadata={"state": json.dumps(metadata)})
        return grid

    def _resume(self) -> tuple[TrainingParts, RunState] | None:
        """The parts and state of the checkpoint in the run's folder; None when there is none."""
        path = self.dir / CHECKPOINT_FILE
        if not path.exists():
            return None
        saved = _saved_state(path)
        if saved is None:
            raise ValueError(f"{path} holds no training state (an older format); delete it to train from the start")
        wanted = _as_json(self.type.architecture())
        if saved.get("architecture") != wanted:
            raise ValueError(
                f"the checkpoint in {self.dir} is for another architecture: {saved.get('architecture')}, "
                f"not {wanted}; delete it (or train in another folder) to start again"
            )
        tensors = load_tensors(path, "cpu")  # load_state_dict moves each tensor where it belongs
        parts = self.type.training_parts()
        for name, network in parts.networks.items():
            network.load_state_dict(_section(tensors, name))
        for name, optimizer in parts.optimizers.items():
            _load_optimizer(optimizer, _section(tensors, f"opt_{name}"))
        if parts.ema is not None:
            parts.ema.load_state_dict(_section(tensors, "ema"))
        state = RunState(
            step=int(saved["step"]),
            seconds=float(saved.get("seconds", 0.0)),
            losses=dict(saved.get("losses", {})),
            warnings=list(saved.get("warnings", [])),
            latest_warnings=list(saved.get("latest_warnings", [])),
        )
        return parts, state


class _LossSums:
    """Running sums of a step's losses, kept on the device until read."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None
        self.count = 0

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        values = torch.stack([loss.detach().float().reshape(()) for loss in losses.values()])
        if self.sums is None:
            self.names, self.sums = list(losses), values
        else:
            self.sums += values
        self.count += 1

    def read_and_reset(self) -> dict[str, float]:
        if self.sums is None or self.count == 0:
            return {}
        means = (self.sums / self.count).tolist()
        self.sums, self.count = None, 0
        return dict(zip(self.names, means))


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so saved and wanted compare equal."""
    return json.loads(json.dumps(value))


def _section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a flattened checkpoint under ``prefix.``, with the prefix removed."""
    head = prefix + "."
    return {key[len(head) :]: value for key, value in tensors.items() if key.startswith(head)}


def _load_optimizer(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    """Restore an optimizer's per-parameter state from ``flatten_state`` output ("<index>.<name>").

    ``load_state_dict`` moves each value where the optimizer keeps it (the step count on the CPU,
    or on the device for fused and capturable optimizers).
    """
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        if name == "step":
            value = value.to(torch.float32)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
