"""The DCGAN generator type: presets, resumable training, sampling, save/load.

Two training recipes share one network family (see :mod:`.model`):

* ``data_efficient=False`` is the study's plain DCGAN, exactly as in the
  PyTorch tutorial: BatchNorm discriminator, labels 1/0, binary
  cross-entropy, Adam(2e-4, betas 0.5/0.999). On 150 images its
  discriminator memorises the set (loss 0.0) and the generator learns noise.
* ``data_efficient=True`` (the default) keeps that generator and loss but
  stops the discriminator from memorising a small set: DiffAugment (colour,
  translation, cutout) on real *and* fake images before every discriminator
  call, a spectrally normalised discriminator without BatchNorm, one-sided
  label smoothing (real target 0.9), a lazy R1 gradient penalty on real
  images, and an exponential moving average (EMA) of the generator weights,
  which is what gets sampled and saved.

Files: a run's ``checkpoint_dir`` holds ``checkpoint.safetensors`` (all
weights and optimizer states; the step, loss history and warnings as JSON in
its metadata, so one atomic file is the whole state) and
``samples/step_NNNNNN.png`` grids of 64 fixed-noise samples. ``save()``
writes ``weights.safetensors`` (the sampling generator only) and
``config.json``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

from ..augment import DEFAULT_POLICY, diff_augment
from ..base import PRESETS, RESOLUTIONS, GeneratorType, ProgressCallback, StopCheck, TrainProgress, TrainResult
from ..checkpoint import flatten_state, load_json, load_tensors, save_json_atomic, save_tensors_atomic
from ..diversity import mean_pairwise_distance, mode_collapse_warning
from ..images import save_grid, to_uint8
from ..registry import register
from .model import (
    Discriminator,
    Generator,
    build_discriminator,
    build_generator,
    make_ema,
    recalibrate_batchnorm,
    update_ema,
)

CHECKPOINT_FILE = "checkpoint.safetensors"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
GRID_SAMPLES = 64  # fixed-noise samples per checkpoint grid (8 x 8)
COLLAPSE_CHECK_FROM = 0.5  # check for mode collapse from half-way on (earlier, G is still forming)
ARCHITECTURE_KEYS = ("resolution", "channels", "nz", "ngf", "ndf", "spectral_norm", "ema")

# Per device, preset and resolution: network width (ngf = ndf), batch size and the base number of steps.
# CPU quick trains 32 px in about 4 minutes and 64 px in about 5 on two quiet cores. On 150 sandals at
# 32 px it reached 0.84-0.90 of the real images' variety in two runs (2,000 steps of 32: 0.74), standard
# 0.94 in both (bench/README.md); small sets get standard when the preset is left out.
_CPU_PRESETS = {
    "quick": {"width": {32: 32, 64: 16, 128: 8}, "batch_size": {32: 64, 64: 32, 128: 32},
              "steps": {32: 3000, 64: 2000, 128: 1500}},
    "standard": {"width": {32: 32, 64: 32, 128: 16}, "batch_size": {32: 64, 64: 64, 128: 64},
                 "steps": {32: 5000, 64: 5000, 128: 4000}},
    "long": {"width": {32: 64, 64: 48, 128: 32}, "batch_size": {32: 64, 64: 64, 128: 64},
             "steps": {32: 15000, 64: 12000, 128: 10000}},
}
_CUDA_PRESETS = {
    "quick": {"width": {32: 64, 64: 64, 128: 64}, "batch_size": {32: 128, 64: 128, 128: 128},
              "steps": {32: 3000, 64: 3000, 128: 3000}},
    "standard": {"width": {32: 64, 64: 64, 128: 64}, "batch_size": {32: 128, 64: 128, 128: 128},
                 "steps": {32: 10000, 64: 10000, 128: 10000}},
    "long": {"width": {32: 128, 64: 96, 128: 96}, "batch_size": {32: 256, 64: 256, 128: 256},
             "steps": {32: 30000, 64: 30000, 128: 30000}},
}


def _size_factor(preset: str, image_count: int, cuda: bool) -> float:
    """More images need more steps to be seen; the CPU quick preset is a time budget and stays fixed."""
    if preset == "quick" and not cuda:
        return 1.0
    return min(2.0, max(1.0, math.sqrt(max(image_count, 1) / 500)))


@dataclass
class _Run:
    """Everything a training run changes, i.e. what a checkpoint holds."""

    G: Generator
    D: Discriminator
    ema: Generator | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0
    seconds: float = 0.0  # training wall time over all sessions of this run
    history: list[dict] = field(default_factory=list)  # {"step", "d", "g"} per progress report
    warnings: list[str] = field(default_factory=list)  # every mode-collapse warning raised so far
    last_collapse: str | None = None  # the warning of the newest check, None when it passed

    @property
    def sampler(self) -> Generator:
        return self.ema if self.ema is not None else self.G


@register
class DCGAN(GeneratorType):
    key = "dcgan"
    label = "DCGAN (fast, GAN)"
    description = (
        "A classic generative adversarial network: quick to train and very fast to generate. "
        "Trained with data-efficient augmentation so it also works with a few hundred images."
    )
    uses_sampling_steps = False
    default_sampling_steps = None

    # ------------------------------------------------------------ config

    @classmethod
    def default_config(
        cls, *, resolution: int, channels: int, preset: str, image_count: int, device: str = "cpu"
    ) -> dict:
        """The recipe for a preset, resolution, dataset size and device (JSON-serialisable).

        ``total_steps`` grows with the square root of the dataset size above
        500 images (at most 2x), except for the CPU quick preset, which is a
        fixed time budget. On CUDA the networks are wider, batches larger,
        and training runs in bf16 autocast with channels_last tensors.
        """
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}")
        if channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}")
        cuda = torch.device(device).type == "cuda"
        table = (_CUDA_PRESETS if cuda else _CPU_PRESETS)[preset]
        total_steps = int(round(table["steps"][resolution] * _size_factor(preset, image_count, cuda)))
        width = table["width"][resolution]
        return {
            "kind": cls.key,
            "resolution": resolution,
            "channels": channels,
            "preset": preset,
            "image_count": image_count,
            "total_steps": total_steps,
            "batch_size": table["batch_size"][resolution],
            "checkpoint_every": max(1, total_steps // 10),
            "report_every": max(1, total_steps // 100),
            "nz": 100,
            "ngf": width,
            "ndf": width,
            "lr_g": 2e-4,
            "lr_d": 2e-4,
            "beta1": 0.5,
            "beta2": 0.999,
            "seed": 0,
            # Data-efficient training (False = the study's plain tutorial DCGAN).
            "data_efficient": True,
            "diffaugment": DEFAULT_POLICY,
            "real_label": 0.9,
            "spectral_norm": True,
            "r1_gamma": 0.1,
            "r1_every": 4,
            "ema": True,
            "ema_half_life_steps": max(10, total_steps // 20),
            # Speed on a GPU (ignored on the CPU).
            "amp_bf16": cuda,
            "channels_last": cuda,
        }

    @staticmethod
    def plain_config(config: dict) -> dict:
        """``config`` turned into the study's plain tutorial DCGAN (no data-efficient tricks)."""
        return {
            **config,
            "data_efficient": False,
            "diffaugment": "",
            "real_label": 1.0,
            "spectral_norm": False,
            "r1_gamma": 0.0,
            "ema": False,
        }

    # ------------------------------------------------------------ construction

    def __init__(self, config: dict, device: str | torch.device = "cpu"):
        super().__init__(config, device)
        if not self.config.get("data_efficient", True):
            self.config = self.plain_config(self.config)
        self.amp = bool(self.config.get("amp_bf16")) and self.device.type == "cuda"
        self.memory_format = (
            torch.channels_last
            if self.config.get("channels_last") and self.device.type == "cuda"
            else torch.contiguous_format
        )
        # The generator used for sampling (the EMA generator once trained with EMA).
        self.netG = self._place(self._seeded(build_generator, 0)).eval()

    def _seeded(self, build, offset: int):
        """Build a network with a seed-fixed initialisation, leaving the global RNG untouched."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config["seed"]) + offset)
            return build(self.config)

    def _place(self, net: torch.nn.Module) -> torch.nn.Module:
        return net.to(self.device, memory_format=self.memory_format)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _new_run(self) -> _Run:
        G = self._place(self._seeded(build_generator, 0)).train()
        D = self._place(self._seeded(build_discriminator, 1)).train()
        betas = (self.config["beta1"], self.config["beta2"])
        return _Run(
            G=G,
            D=D,
            ema=make_ema(G) if self.config["ema"] else None,
            opt_g=torch.optim.Adam(G.parameters(), lr=self.config["lr_g"], betas=betas),
            opt_d=torch.optim.Adam(D.parameters(), lr=self.config["lr_d"], betas=betas),
        )

    # ------------------------------------------------------------ training

    def train(
        self,
        images: torch.Tensor,
        *,
        checkpoint_dir: Path,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> TrainResult:
        """Train on float [N,C,H,W] images in [-1, 1] (uint8 is accepted too); resumable.

        Loss values are read back from the device only at progress reports
        (every ``report_every`` steps), so a GPU never waits on the host in
        the inner loop. Losses are reported as ``{"d": ..., "g": ...}``, the
        mean over the steps since the last report.
        """
        cfg = self.config
        checkpoint_dir = Path(checkpoint_dir)
        data = self._prepare_data(images)
        run = self._load_checkpoint(checkpoint_dir) or self._new_run()
        real_diversity = mean_pairwise_distance(data.float().cpu())
        total = int(cfg["total_steps"])
        rng = torch.Generator(device=self.device).manual_seed(int(cfg["seed"]) * 1_000_003 + run.step)
        fixed_noise = torch.randn(
            GRID_SAMPLES, cfg["nz"], 1, 1, generator=torch.Generator().manual_seed(int(cfg["seed"]) + 7)
        ).to(self.device)

        loss_sums = torch.zeros(2, device=self.device)  # running sums of (d, g) losses, read at reports
        steps_in_sums = 0
        started = time.perf_counter()
        seconds_before = run.seconds
        stopped = False

        def elapsed() -> float:
            return seconds_before + time.perf_counter() - started

        while run.step < total:
            if should_stop is not None and should_stop():
                stopped = True
                break
            d_loss, g_loss = self._train_step(run, data, rng)
            loss_sums += torch.stack([d_loss, g_loss])
            steps_in_sums += 1
            run.step += 1

            if run.step % cfg["report_every"] == 0 or run.step == total:
                d_mean, g_mean = (loss_sums / steps_in_sums).tolist()  # the only host sync
                loss_sums.zero_()
                steps_in_sums = 0
                run.history.append({"step": run.step, "d": d_mean, "g": g_mean})
            if run.step % cfg["checkpoint_every"] == 0 or run.step == total:
                run.seconds = elapsed()
                grid = self._checkpoint(run, checkpoint_dir, fixed_noise, real_diversity)
                self._report(on_progress, run, total, grid)
            elif run.step % cfg["report_every"] == 0:
                self._report(on_progress, run, total, None)

        run.seconds = elapsed()
        if stopped:
            grid = self._checkpoint(run, checkpoint_dir, fixed_noise, real_diversity)
            self._report(on_progress, run, total, grid)
        self.netG = run.sampler.eval()
        return TrainResult(
            steps=run.step,
            seconds=run.seconds,
            final_losses={k: run.history[-1][k] for k in ("d", "g")} if run.history else {},
            warnings=self._result_warnings(run),
            stopped_early=stopped,
        )

    def _prepare_data(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        expected = (cfg["channels"], cfg["resolution"], cfg["resolution"])
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected images shaped [N, {expected[0]}, {expected[1]}, {expected[2]}], got {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError("no training images")
        data = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
        return data.to(self.device, memory_format=self.memory_format)

    def _train_step(self, run: _Run, data: torch.Tensor, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One discriminator and one generator update; returns the two detached losses (no sync)."""
        cfg = self.config
        batch = cfg["batch_size"]
        policy = cfg["diffaugment"]
        augment = (lambda x: diff_augment(x, policy, generator=rng)) if policy else (lambda x: x)
        index = torch.randint(0, data.shape[0], (batch,), device=self.device, generator=rng)
        real = data[index]
        noise = torch.randn(batch, cfg["nz"], 1, 1, device=self.device, generator=rng)
        use_r1 = cfg["r1_gamma"] > 0 and run.step % cfg["r1_every"] == 0

        # Discriminator: real -> real_label (0.9 = one-sided smoothing), fake -> 0.
        with self._autocast():
            fake = run.G(noise)
            real_in = augment(real)
            if use_r1:
                real_in = real_in.detach().requires_grad_(True)
            real_logits = run.D(real_in).float()
            fake_logits = run.D(augment(fake.detach())).float()
            d_loss = F.binary_cross_entropy_with_logits(
                real_logits, torch.full_like(real_logits, cfg["real_label"])
            ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        d_total = d_loss
        if use_r1:
            # R1: penalise the discriminator's gradient on real images (lazy: every r1_every steps, scaled up).
            (grad,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
            r1 = grad.float().square().sum(dim=(1, 2, 3)).mean()
            d_total = d_loss + r1 * (cfg["r1_gamma"] / 2 * cfg["r1_every"])
        run.opt_d.zero_grad(set_to_none=True)
        d_total.backward()
        run.opt_d.step()

        # Generator: make the discriminator call its (augmented) fakes real.
        run.D.requires_grad_(False)
        with self._autocast():
            logits = run.D(augment(fake)).float()
            g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        run.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        run.opt_g.step()
        run.D.requires_grad_(True)

        if run.ema is not None:
            decay = 0.5 ** (1.0 / cfg["ema_half_life_steps"])
            update_ema(run.ema, run.G, min(decay, (1 + run.step) / (10 + run.step)))
        return d_loss.detach(), g_loss.detach()

    def _report(self, on_progress: ProgressCallback | None, run: _Run, total: int, grid: Path | None) -> None:
        if on_progress is None:
            return
        last = run.history[-1] if run.history else {}
        on_progress(
            TrainProgress(
                step=run.step,
                total_steps=total,
                losses={k: last[k] for k in ("d", "g") if k in last},
                sample_grid=grid,
                checkpointed=grid is not None,
                warnings=[run.last_collapse] if grid is not None and run.last_collapse else [],
            )
        )

    @staticmethod
    def _result_warnings(run: _Run) -> list[str]:
        if run.last_collapse:
            return [run.last_collapse]
        if run.warnings:
            return [f"{run.warnings[-1]}; the samples became varied again by the end of training"]
        return []

    # ------------------------------------------------------------ checkpoints

    def _checkpoint(self, run: _Run, directory: Path, fixed_noise: torch.Tensor, real_diversity: float) -> Path:
        """Sample grid + mode-collapse check + one atomic checkpoint file; returns the grid path."""
        sampler = run.sampler
        recalibrate_batchnorm(sampler, seed=int(self.config["seed"]))
        was_training = sampler.training
        sampler.eval()
        with torch.inference_mode(), self._autocast():
            samples = to_uint8(sampler(fixed_noise))
        sampler.train(was_training)
        grid = save_grid(samples, directory / "samples" / f"step_{run.step:06d}.png", columns=8)

        run.last_collapse = None
        if run.step >= COLLAPSE_CHECK_FROM * self.config["total_steps"]:
            warning = mode_collapse_warning(mean_pairwise_distance(samples), real_diversity, step=run.step)
            run.last_collapse = warning
            if warning:
                run.warnings.append(warning)

        tensors = {
            **flatten_state("G", run.G.state_dict()),
            **flatten_state("D", run.D.state_dict()),
            **flatten_state("opt_g", run.opt_g.state_dict()["state"]),
            **flatten_state("opt_d", run.opt_d.state_dict()["state"]),
        }
        if run.ema is not None:
            tensors.update(flatten_state("ema", run.ema.state_dict()))
        state = {
            "step": run.step,
            "seconds": run.seconds,
            "history": run.history,
            "warnings": run.warnings,
            "last_collapse": run.last_collapse,
            "architecture": {k: self.config.get(k) for k in ARCHITECTURE_KEYS},
        }
        save_tensors_atomic(tensors, directory / CHECKPOINT_FILE, metadata={"state": json.dumps(state)})
        return grid

    def _load_checkpoint(self, directory: Path) -> _Run | None:
        path = directory / CHECKPOINT_FILE
        if not path.exists():
            return None
        with safe_open(str(path), framework="pt") as fh:
            state = json.loads(fh.metadata()["state"])
        wanted = {k: self.config.get(k) for k in ARCHITECTURE_KEYS}
        if state["architecture"] != wanted:
            raise ValueError(f"checkpoint in {directory} is for {state['architecture']}, not {wanted}")
        tensors = load_tensors(path, "cpu")  # load_state_dict moves each tensor where it belongs
        run = self._new_run()
        run.G.load_state_dict(_section(tensors, "G"))
        run.D.load_state_dict(_section(tensors, "D"))
        if run.ema is not None:
            run.ema.load_state_dict(_section(tensors, "ema"))
        _load_optimizer(run.opt_g, _section(tensors, "opt_g"))
        _load_optimizer(run.opt_d, _section(tensors, "opt_d"))
        run.step = int(state["step"])
        run.seconds = float(state["seconds"])
        run.history = list(state["history"])
        run.warnings = list(state["warnings"])
        run.last_collapse = state["last_collapse"]
        return run

    # ------------------------------------------------------------ sampling, save, load

    @torch.inference_mode()
    def sample(self, n: int, *, seed: int, steps: int | None = None, batch_size: int = 256) -> torch.Tensor:
        """``n`` images as uint8 [n, C, H, W] on the CPU; ``steps`` is ignored (a GAN has none).

        All noise is drawn up front from a generator seeded with ``seed``, so
        image ``i`` is the same whatever ``n`` and ``batch_size`` are (the
        generator runs in eval mode, so images do not depend on each other).
        """
        cfg = self.config
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        noise = torch.randn(n, cfg["nz"], 1, 1, device=self.device, generator=generator)
        out = torch.empty(n, cfg["channels"], cfg["resolution"], cfg["resolution"], dtype=torch.uint8)
        self.netG.eval()
        with self._autocast():
            for start in range(0, n, batch_size):
                out[start : start + batch_size] = to_uint8(self.netG(noise[start : start + batch_size]))
        return out

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        save_tensors_atomic(dict(self.netG.state_dict()), directory / WEIGHTS_FILE)
        save_json_atomic(self.config, directory / CONFIG_FILE)

    @classmethod
    def load(cls, directory: Path, device: str | torch.device = "cpu") -> "DCGAN":
        directory = Path(directory)
        model = cls(load_json(directory / CONFIG_FILE), device=device)
        model.netG.load_state_dict(load_tensors(directory / WEIGHTS_FILE, model.device))
        model.netG.eval()
        return model


def _section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a flattened checkpoint under ``prefix.``, with the prefix removed."""
    head = prefix + "."
    return {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}


def _load_optimizer(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    """Restore an optimizer's per-parameter state from ``flatten_state`` output ("<index>.<name>")."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
