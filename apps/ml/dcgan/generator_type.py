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

Training runs in the shared :mod:`apps.ml.engine.trainer` (loop, checkpoints, resume, EMA,
grids); this module supplies the networks, one training step, the 64
fixed-noise grid samples (after measuring the EMA generator's BatchNorm
statistics again) and the mode-collapse check of each grid. ``save()`` (the
contract's) writes ``weights.safetensors`` (the sampling generator), ``config.json`` and, after
training, ``discriminator.safetensors`` (what a fine-tuned child starts its
discriminator from; generation never reads it).

Fine-tuning (:mod:`apps.ml.engine.transfer`): both networks start from the base's, and
FreezeD keeps the discriminator's first ``freeze_d_blocks`` stride-2 blocks
fixed (DCGANConfig.for_base).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import torch
import torch.nn.functional as F

from apps.ml.dcgan.config import DCGANConfig, fine_tuning_recipe
from apps.ml.dcgan.model import Discriminator, Generator, build_discriminator, build_generator, recalibrate_batchnorm
from apps.ml.engine.augment import diff_augment
from apps.ml.engine.base import SAMPLING_BATCH_SIZE, BaseGenerator, GeneratorType, SampleLabels
from apps.ml.engine.config import capitalised
from apps.ml.engine.ema import EMA, decay_for_half_life
from apps.ml.engine.images import to_uint8
from apps.ml.engine.training import TrainingData, TrainingParts, images_and_labels, prepare_images
from apps.ml.engine.transfer import DISCRIMINATOR_FILE, freeze_blocks, trainable
from apps.ml.quality.diversity import mean_pairwise_distance, mode_collapse_warning

Network = TypeVar("Network", bound=torch.nn.Module)
GRID_SAMPLES = 64  # fixed-noise samples per checkpoint grid (8 x 8)
COLLAPSE_CHECK_FROM = 0.5  # check for mode collapse from half-way on (earlier, G is still forming)
_UNCONDITIONAL = (
    "DCGAN learns no classes (num_classes must be 0, no labels): train one DCGAN per class, "
    "or a DDIM, which learns all the classes of a labelled dataset at once"
)


class DCGAN(GeneratorType):
    """A generative adversarial network: a DCGAN generator and a (spectrally normalised) discriminator."""

    kind = "dcgan"
    label = "DCGAN (fast, GAN)"
    description = (
        "A classic generative adversarial network: quick to train and very fast to generate. "
        "Trained with data-efficient augmentation so it also works with a few hundred images."
    )
    default_sampling_steps = None  # a GAN takes no sampling steps
    architecture_keys = ("resolution", "channels", "nz", "ngf", "ndf", "spectral_norm", "ema")
    supports_fine_tuning = True  # weights_from_base: the base's EMA generator (and its discriminator, for FreezeD)
    fine_tuning = (
        f"{capitalised(fine_tuning_recipe())}. Faster, but in every recipe measured the images were less "
        "realistic than the standard preset's from scratch (bench/README.md): train from scratch when realism "
        "matters most."
    )

    config_class = DCGANConfig
    config: DCGANConfig

    # ------------------------------------------------------------ construction

    def __init__(self, config: Mapping[str, Any], device: str | torch.device = "cpu"):
        super().__init__(config, device)
        if int(self.config.get("num_classes") or 0) > 0:
            raise ValueError(_UNCONDITIONAL)
        if not self.config.data_efficient:
            self.config = self.config.plain()
        self.amp = self.config.amp_bf16 and self.device.type == "cuda"
        self.memory_format = (
            torch.channels_last if self.config.channels_last and self.device.type == "cuda" else torch.contiguous_format
        )
        # The generator used for sampling (the EMA generator once trained with EMA).
        self.netG = self._place(self._seeded(build_generator, 0)).eval()
        self.netD: torch.nn.Module | None = None  # the trained discriminator, saved for fine-tuning (FreezeD)
        self.frozen_d: list[str] = []  # the discriminator's parameters FreezeD keeps (names)

    def _seeded(self, build: Callable[[DCGANConfig], Network], offset: int) -> Network:
        """Build a network with a seed-fixed initialisation, leaving the global RNG untouched."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config.seed) + offset)
            return build(self.config)

    def _place(self, net: Network) -> Network:
        return net.to(self.device).to(memory_format=self.memory_format)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    # ------------------------------------------------------------ hooks of the shared trainer

    def training_parts(self) -> TrainingParts:
        G = self._seeded(build_generator, 0)
        D = self._seeded(build_discriminator, 1)
        self._load_start("G", G)  # fine-tuning: the base's networks (before they move to the device)
        self._load_start("D", D)
        G, D = self._place(G).train(), self._place(D).train()
        self.frozen_d = self._freeze_d(D)
        betas = (self.config.beta1, self.config.beta2)
        ema = EMA(G, decay_for_half_life(self.config.ema_half_life_steps)) if self.config.ema else None
        return TrainingParts(
            networks={"G": G, "D": D},
            optimizers={
                "g": torch.optim.Adam(G.parameters(), lr=self.config.lr_g, betas=betas),
                "d": torch.optim.Adam(D.parameters(), lr=self.config.lr_d, betas=betas),
            },
            ema=ema,
            ema_of="G",
        )

    def _freeze_d(self, D: Discriminator) -> list[str]:
        """FreezeD: the first ``freeze_d_blocks`` stride-2 convolutions of ``D`` take no gradient; only when ``D``
        starts from a base's discriminator (freezing random weights would only cripple it)."""
        count = int(self.config.freeze_d_blocks)
        if not count or not (self.start_weights and "D" in self.start_weights):
            return []
        convs: list[torch.nn.Module] = [m for m in D.main if isinstance(m, torch.nn.Conv2d)]
        return freeze_blocks(D, convs[:-1][:count])  # the stride-2 ones, not the last 4x4

    def weights_from_base(self, base: BaseGenerator) -> dict[str, dict[str, torch.Tensor]]:
        """The base's (EMA) generator, and its discriminator where the base saved one (older ones did not:
        the discriminator then starts fresh and nothing is frozen)."""
        weights = {"G": dict(base.weights)}
        if base.discriminator is not None:
            weights["D"] = dict(base.discriminator)
        else:
            base.notes.append("the base saved no discriminator: it starts fresh, nothing frozen")
        return weights

    def training_data(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> TrainingData:
        if labels is not None:
            raise ValueError(_UNCONDITIONAL)
        data = prepare_images(
            images,
            channels=self.config.channels,
            resolution=self.config.resolution,
            device=self.device,
            memory_format=self.memory_format,
        )
        self._real_diversity = mean_pairwise_distance(data.float().cpu())  # the mode-collapse check's yardstick
        return data

    def training_step(
        self, parts: TrainingParts, data: TrainingData, step: int, rng: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """One discriminator and one generator update; returns the two detached losses (no sync)."""
        images, _ = images_and_labels(data)  # training_data refused labels
        cfg = self.config
        G, D = parts.networks["G"], parts.networks["D"]
        opt_g, opt_d = parts.optimizers["g"], parts.optimizers["d"]
        batch = cfg.batch_size
        policy = cfg.diffaugment
        augment = (lambda x: diff_augment(x, policy, generator=rng)) if policy else (lambda x: x)
        index = torch.randint(0, images.shape[0], (batch,), device=self.device, generator=rng)
        real = images[index]
        noise = torch.randn(batch, cfg.nz, 1, 1, device=self.device, generator=rng)
        use_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0

        # Discriminator: real -> real_label (0.9 = one-sided smoothing), fake -> 0.
        with self._autocast():
            fake = G(noise)
            real_in = augment(real)
            if use_r1:
                real_in = real_in.detach().requires_grad_(True)
            real_logits = D(real_in).float()
            fake_logits = D(augment(fake.detach())).float()
            d_loss = F.binary_cross_entropy_with_logits(
                real_logits, torch.full_like(real_logits, cfg.real_label)
            ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        d_total = d_loss
        if use_r1:
            # R1: penalise the discriminator's gradient on real images (lazy: every r1_every steps, scaled up).
            (grad,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
            r1 = grad.float().square().sum(dim=(1, 2, 3)).mean()
            d_total = d_loss + r1 * (cfg.r1_gamma / 2 * cfg.r1_every)
        opt_d.zero_grad(set_to_none=True)
        torch.autograd.backward(d_total)
        opt_d.step()

        # Generator: make the discriminator call its (augmented) fakes real.
        D.requires_grad_(False)
        with self._autocast():
            logits = D(augment(fake)).float()
            g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        opt_g.zero_grad(set_to_none=True)
        torch.autograd.backward(g_loss)
        opt_g.step()
        trainable(D, self.frozen_d)  # every parameter but FreezeD's
        return {"d": d_loss.detach(), "g": g_loss.detach()}

    def grid_samples(self, parts: TrainingParts, step: int) -> torch.Tensor:
        """64 fixed-noise samples of the sampling generator, its BatchNorm statistics measured again first."""
        sampler = cast(Generator, parts.sampler)  # G's EMA copy (or G)
        recalibrate_batchnorm(sampler, seed=int(self.config.seed))
        fixed_noise = torch.randn(
            GRID_SAMPLES, self.config.nz, 1, 1, generator=torch.Generator().manual_seed(int(self.config.seed) + 7)
        ).to(self.device)
        was_training = sampler.training
        sampler.eval()
        with torch.inference_mode(), self._autocast():
            samples = to_uint8(sampler(fixed_noise))
        sampler.train(was_training)
        return samples

    def check_samples(self, parts: TrainingParts, step: int, samples: torch.Tensor) -> list[str]:
        """Mode collapse: from half-way on, grid samples far less varied than the real images."""
        if step < COLLAPSE_CHECK_FROM * self.config.total_steps:
            return []
        warning = mode_collapse_warning(mean_pairwise_distance(samples), self._real_diversity, step=step)
        return [warning] if warning else []

    def result_warnings(self, latest: list[str], earlier: list[str]) -> list[str]:
        if latest:
            return list(latest)
        if earlier:
            return [f"{earlier[-1]}; the samples became varied again by the end of training"]
        return []

    def finish_training(self, parts: TrainingParts, step: int) -> None:
        self.netG = cast(Generator, parts.sampler).eval()  # G's EMA copy (or G)
        self.netD = parts.networks["D"]

    # ------------------------------------------------------------ sampling

    @torch.inference_mode()
    def sample(
        self,
        n: int,
        *,
        seed: int,
        steps: int | None = None,
        batch_size: int = SAMPLING_BATCH_SIZE,
        labels: SampleLabels = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """``n`` images as uint8 [n, C, H, W] on the CPU; ``steps`` is ignored (a GAN has none), labels and
        guidance are refused (it learns no classes).

        All noise is drawn up front from a generator seeded with ``seed``, so
        image ``i`` is the same whatever ``n`` and ``batch_size`` are (the
        generator runs in eval mode, so images do not depend on each other).
        """
        self.refuse_labels(labels, guidance)
        cfg = self.config
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        noise = torch.randn(n, cfg.nz, 1, 1, device=self.device, generator=generator)
        out = torch.empty(n, cfg.channels, cfg.resolution, cfg.resolution, dtype=torch.uint8)
        self.netG.eval()
        with self._autocast():
            for start in range(0, n, batch_size):
                out[start : start + batch_size] = to_uint8(self.netG(noise[start : start + batch_size]))
        return out

    # ------------------------------------------------------------ files (the contract's save and load)

    def weights_state(self) -> dict[str, torch.Tensor]:
        return dict(self.netG.state_dict())

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.netG.load_state_dict(weights)
        self.netG.eval()

    def extra_files(self) -> dict[str, dict[str, torch.Tensor]]:
        """After training, the discriminator: what a model fine-tuned from this one starts its own from."""
        return {} if self.netD is None else {DISCRIMINATOR_FILE: dict(self.netD.state_dict())}
