"""DDIM generator type: schedule and sampler maths, training, checkpoints (tiny models, CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from apps.ml.ddim import DDIM
from apps.ml.ddim.config import DDIMConfig
from apps.ml.ddim.sampler import ddim_sample, ddim_step, ddim_timesteps, dpmpp_2m_sample
from apps.ml.ddim.schedule import CosineSchedule, add_noise, loss_weight, predict_x0_eps, training_target
from apps.ml.ddim.unet import UNet
from apps.ml.engine import registry
from apps.ml.engine.config import ConfigError
from tests.ml.ddim.tiny import perturb, tiny_config, tiny_images, weights

torch.set_num_threads(1)


# ---------------------------------------------------------------- schedule and sampler maths


def test_cosine_schedule_runs_from_signal_to_noise():
    s = CosineSchedule(1000)
    a = s.alpha_bar
    assert a.shape == (1000,)
    assert torch.all(a[1:] < a[:-1])
    assert a[0] > 0.999 and a[-1] < 1e-6
    shifted = CosineSchedule(1000, shift=0.5).alpha_bar
    assert torch.all(shifted[1:-1] < a[1:-1])  # a 64 px shift adds noise at every step


@pytest.mark.parametrize("objective", ["v", "eps"])
def test_prediction_recovers_x0_and_eps_from_the_true_target(objective):
    g = torch.Generator().manual_seed(1)
    x0, eps = (
        torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64),
        torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64),
    )
    alpha = torch.tensor([0.9, 0.5, 0.1, 0.01], dtype=torch.float64)
    x_t = add_noise(x0, eps, alpha)
    got_x0, got_eps = predict_x0_eps(x_t, training_target(x0, eps, alpha, objective), alpha, objective)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, eps)


@pytest.mark.parametrize("objective", ["v", "eps"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_closed_form(objective, eta):
    """One update against the DDIM formula (Song et al. 2021, eq. 12) written out by hand."""
    g = torch.Generator().manual_seed(2)
    x_t = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64) * 0.3
    z = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    a_t, a_s = 0.3, 0.8
    x0 = (x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)  # the x0 this eps implies
    if objective == "eps":
        model_out = eps
    else:  # v = sqrt(a) eps - sqrt(1 - a) x0
        model_out = math.sqrt(a_t) * eps - math.sqrt(1 - a_t) * x0
    sigma = eta * math.sqrt((1 - a_s) / (1 - a_t)) * math.sqrt(1 - a_t / a_s)
    expected = math.sqrt(a_s) * x0 + math.sqrt(1 - a_s - sigma**2) * eps + sigma * z
    got, got_x0 = ddim_step(x_t, model_out, a_t, a_s, objective=objective, eta=eta, noise=z, clip=False)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got, expected)


def test_ddim_step_clip_keeps_x0_in_range_and_consistent():
    x_t = torch.full((1, 1, 2, 2), 3.0, dtype=torch.float64)
    eps = torch.zeros_like(x_t)
    x_s, x0 = ddim_step(x_t, eps, 0.5, 0.9, objective="eps", clip=True)
    assert x0.max() <= 1.0
    eps_used = (x_t - math.sqrt(0.5) * x0) / math.sqrt(0.5)
    torch.testing.assert_close(x_s, math.sqrt(0.9) * x0 + math.sqrt(0.1) * eps_used)


def test_ddim_timesteps_start_from_noise_and_descend():
    steps = ddim_timesteps(1000, 10)
    assert len(steps) == 10 and steps[0] == 999
    assert all(a > b for a, b in zip(steps, steps[1:])) and steps[-1] >= 0
    assert len(ddim_timesteps(1000, 250)) == 250
    with pytest.raises(ValueError):
        ddim_timesteps(1000, 0)


@pytest.mark.parametrize("objective,steps", [("v", 1), ("v", 7), ("v", 50), ("eps", 7), ("eps", 50)])
def test_deterministic_ddim_with_the_exact_denoiser_returns_the_data_point(objective, steps):
    """For a one-image data set the ideal prediction is known in closed form;
    deterministic DDIM must then land exactly on that image from any noise.
    (One eps step from pure noise divides by sqrt(alpha) ~ 0: ill-conditioned, so v only.)"""
    schedule = CosineSchedule(1000)
    target = torch.linspace(-0.9, 0.9, 16).reshape(1, 1, 4, 4)

    def exact(x_t, t):
        a = schedule.alpha_bar_on("cpu")[t.long()].reshape(-1, 1, 1, 1)
        eps = (x_t - a.sqrt() * target) / (1 - a).sqrt()
        return eps if objective == "eps" else a.sqrt() * eps - (1 - a).sqrt() * target

    out = ddim_sample(
        exact, schedule, (5, 1, 4, 4), steps=steps, objective=objective, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(out, target.expand(5, -1, -1, -1), atol=1e-4, rtol=0)


def test_v_loss_weights():
    """Min-SNR-gamma for v: the paper's min(snr, gamma) / (snr + 1), or min(snr + 1, gamma) / (snr + 1)."""
    snr = torch.tensor([1e-9, 0.5, 4.0, 9.0, 1e4])
    torch.testing.assert_close(loss_weight(snr, "v", 5.0), torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    torch.testing.assert_close(
        loss_weight(snr, "v", 5.0, plus_one=True), torch.tensor([1.0, 1.0, 1.0, 0.5, 5 / (1e4 + 1)])
    )
    torch.testing.assert_close(loss_weight(snr, "v", None), torch.ones(5))


@pytest.mark.parametrize("objective,steps", [("v", 1), ("v", 2), ("v", 7), ("v", 50), ("eps", 7)])
def test_dpmpp_2m_with_the_exact_denoiser_returns_the_data_point(objective, steps):
    """With a one-image data set every x0 prediction is that image: the solver must land on it."""
    schedule = CosineSchedule(1000)
    target = torch.linspace(-0.9, 0.9, 16).reshape(1, 1, 4, 4)

    def exact(x_t, t):
        a = schedule.alpha_bar_on("cpu")[t.long()].reshape(-1, 1, 1, 1)
        eps = (x_t - a.sqrt() * target) / (1 - a).sqrt()
        return eps if objective == "eps" else a.sqrt() * eps - (1 - a).sqrt() * target

    out = dpmpp_2m_sample(
        exact, schedule, (5, 1, 4, 4), steps=steps, objective=objective, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(out, target.expand(5, -1, -1, -1), atol=1e-4, rtol=0)


def _gaussian_problem(mu: float = 0.3, s: float = 0.5):
    """Data ~ N(mu, s^2) per pixel: the ideal v-prediction and the ODE's end point are known exactly."""
    schedule = CosineSchedule(1000)

    def ideal(x_t, t):
        a = schedule.alpha_bar_on("cpu")[t.long()].reshape(-1, 1, 1, 1)
        al, si = a.sqrt(), (1 - a).sqrt()
        x0 = mu + al * s * s / (al * al * s * s + si * si) * (x_t - al * mu)
        return al * (x_t - al * x0) / si - si * x0

    def solution(noise):  # the probability-flow ODE keeps (x_t - alpha mu) / std(x_t) constant
        a = float(schedule.alpha_bar[-1])
        return mu + s * (noise - math.sqrt(a) * mu) / math.sqrt(a * s * s + 1 - a)

    return schedule, ideal, solution


def test_dpmpp_2m_solves_the_ode_more_accurately_than_ddim_at_few_steps():
    schedule, ideal, solution = _gaussian_problem()
    shape = (2000, 1, 1, 1)
    exact = solution(torch.randn(shape, generator=torch.Generator().manual_seed(0)))

    def error(sampler, steps):
        out = sampler(
            ideal, schedule, shape, steps=steps, objective="v", generator=torch.Generator().manual_seed(0), clip=False
        )
        return float((out - exact).abs().mean())

    for steps in (10, 20):
        assert error(dpmpp_2m_sample, steps) < 0.4 * error(ddim_sample, steps)
    assert error(dpmpp_2m_sample, 20) < 0.2 * error(dpmpp_2m_sample, 10)  # second order: error falls fast
    assert error(dpmpp_2m_sample, 20) < error(ddim_sample, 50)


def test_dpmpp_2m_equals_ddim_for_two_steps():
    """Its first step is a DDIM step and the last one returns x0: with two steps they agree exactly."""
    net = UNet(
        image_channels=1,
        resolution=8,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(4,),
        head_channels=8,
        groups=4,
        patch_size=1,
    ).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    schedule = CosineSchedule(1000)
    kwargs = dict(steps=2, objective="v")
    a = ddim_sample(net, schedule, (3, 1, 8, 8), generator=torch.Generator().manual_seed(4), **kwargs)
    b = dpmpp_2m_sample(net, schedule, (3, 1, 8, 8), generator=torch.Generator().manual_seed(4), **kwargs)
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- network


@pytest.mark.parametrize("channels,resolution,patch", [(1, 8, 1), (3, 16, 1), (3, 16, 2)])
def test_unet_keeps_shape(channels, resolution, patch):
    net = UNet(
        image_channels=channels,
        resolution=resolution,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(8, 4),
        head_channels=8,
        groups=4,
        patch_size=patch,
    )
    x = torch.randn(2, channels, resolution, resolution)
    assert net(x, torch.tensor([0.0, 500.0])).shape == x.shape


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_presets_build_for_every_resolution(resolution):
    for device in ("cpu", "cuda"):
        config = DDIM.default_config(resolution=resolution, channels=3, preset="quick", image_count=150, device=device)
        for key in ("resolution", "channels", "preset", "total_steps", "batch_size", "checkpoint_every"):
            assert key in config
        assert config["total_steps"] > 0
    net = UNet(
        image_channels=3,
        resolution=resolution,
        base_channels=8,
        channel_mults=tuple(config["channel_mults"]),
        num_res_blocks=1,
        attention_resolutions=tuple(config["attention_resolutions"]),
        head_channels=8,
        groups=4,
    )
    x = torch.randn(1, 3, resolution, resolution)
    assert net(x, torch.tensor([10.0])).shape == x.shape


def test_more_images_and_longer_presets_train_longer():
    def steps(preset, count):
        return DDIM.default_config(resolution=32, channels=1, preset=preset, image_count=count)["total_steps"]

    assert steps("quick", 150) < steps("standard", 150) < steps("long", 150)
    assert steps("quick", 150) < steps("quick", 1000)


def test_small_sets_get_the_small_recipe_on_a_gpu_too():
    def cfg(count, device):
        return DDIM.default_config(resolution=32, channels=1, preset="quick", image_count=count, device=device)

    small_gpu, small_cpu, big_gpu = cfg(150, "cuda"), cfg(150, "cpu"), cfg(1000, "cuda")
    recipe = ("base_channels", "channel_mults", "patch_size", "batch_size", "learning_rate", "total_steps")
    assert {k: small_gpu[k] for k in recipe} == {k: small_cpu[k] for k in recipe}  # measured not to copy
    assert small_gpu["amp_bf16"] and small_gpu["compile"] and not small_cpu["amp_bf16"]  # still GPU-fast
    assert big_gpu["base_channels"] > small_gpu["base_channels"] and big_gpu["batch_size"] > small_gpu["batch_size"]


def test_registered_with_sampling_steps():
    cls = registry.get("ddim")
    assert cls is DDIM and cls.uses_sampling_steps and cls.default_sampling_steps == 12
    assert cls.default_sampler == "dpmpp2m"
    config = cls.default_config(resolution=64, channels=3, preset="quick", image_count=150, device="cpu")
    assert (config["sampler"], config["sampling_steps"]) == ("dpmpp2m", 12)  # generation and report alike
    assert ("ddim", DDIM.label) in registry.choices()


# ---------------------------------------------------------------- training, sampling, files


def fixed_eval_loss(gen: DDIM, images: torch.Tensor) -> float:
    """The loss on fixed timesteps and noise, with the EMA-free trained weights, no dropout."""
    g = torch.Generator().manual_seed(99)
    x0 = images.repeat(4, 1, 1, 1)
    t = torch.linspace(50, 950, x0.shape[0]).long()
    noise = torch.randn(x0.shape, generator=g)
    gen.model.eval()
    with torch.no_grad():
        return float(gen.loss(x0, t, noise))


def test_training_reduces_the_loss(tmp_path):
    torch.manual_seed(0)
    images = tiny_images(16)
    gen = DDIM(tiny_config(total_steps=60, checkpoint_every=1000, report_every=20, warmup_steps=5), device="cpu")
    before = fixed_eval_loss(gen, images)
    reports = []
    result = gen.train(images, checkpoint_dir=tmp_path, on_progress=reports.append)
    after = fixed_eval_loss(gen, images)
    assert result.steps == 60 and not result.stopped_early
    assert [r.step for r in reports] == [20, 40, 60]
    assert after < 0.6 * before, (before, after)


def test_eta_zero_sampling_is_deterministic_for_a_seed_and_differs_across_seeds():
    gen = DDIM(tiny_config(), device="cpu")
    perturb(gen)
    a = gen.sample(6, seed=3, steps=5, batch_size=4)
    b = gen.sample(6, seed=3, steps=5, batch_size=4)
    c = gen.sample(6, seed=4, steps=5, batch_size=4)
    assert a.dtype == torch.uint8 and a.shape == (6, 1, 8, 8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    noisy_1 = gen.sample(4, seed=3, steps=5, eta=1.0)
    noisy_2 = gen.sample(4, seed=3, steps=5, eta=1.0)
    assert torch.equal(noisy_1, noisy_2)  # eta > 0 draws its noise from the seeded generator too


def test_the_sampler_is_chosen_by_argument_or_config():
    gen = DDIM(tiny_config(), device="cpu")
    perturb(gen)
    assert gen.config["sampler"] == DDIM.default_sampler == "dpmpp2m"
    dpm = gen.sample(4, seed=3, steps=5)
    assert torch.equal(dpm, gen.sample(4, seed=3, steps=5, sampler="dpmpp2m"))
    ddim = gen.sample(4, seed=3, steps=5, sampler="ddim")
    assert not torch.equal(dpm, ddim)
    as_ddim = DDIM({**gen.config, "sampler": "ddim"}, device="cpu")
    as_ddim.ema.load_state_dict(gen.ema.state_dict())
    assert torch.equal(as_ddim.sample(4, seed=3, steps=5), ddim)
    legacy = {k: v for k, v in gen.config.items() if k != "sampler"}  # saved before samplers were selectable
    assert DDIM(legacy, device="cpu").sample(1, seed=0, steps=2).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError):
        gen.sample(2, seed=0, steps=3, sampler="euler")
    with pytest.raises(ValueError):
        DDIM({**gen.config, "sampler": "euler"}, device="cpu")
    with pytest.raises(ValueError):  # stochastic sampling is DDIM's
        gen.sample(2, seed=0, steps=3, sampler="dpmpp2m", eta=1.0)


def test_training_is_reproducible_for_a_seed_with_dropout(tmp_path):
    """Batches, noise, timesteps and dropout all come from the seed; the caller's RNG is left alone."""
    images = tiny_images(16)
    config = tiny_config(dropout=0.2, total_steps=8, checkpoint_every=4, report_every=2)

    def run(name: str, seed: int, stop_at: int | None = None, gen: DDIM | None = None) -> DDIM:
        gen = gen or DDIM({**config, "seed": seed}, device="cpu")
        gen.train(
            images, checkpoint_dir=tmp_path / name, should_stop=(lambda: gen.step >= stop_at) if stop_at else None
        )
        return gen

    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = weights(run("a", seed=7))
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(456)  # a different global state must not matter
    second = weights(run("b", seed=7))
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    other = weights(run("c", seed=8))
    assert not all(torch.equal(x, y) for x, y in zip(first, other))
    # Stopped between two checkpoints and resumed in a fresh instance: the same weights as in one go.
    run("d", seed=7, stop_at=5)
    resumed = weights(run("d", seed=7))
    assert all(torch.equal(x, y) for x, y in zip(first, resumed))


def test_save_then_load_gives_the_same_samples(tmp_path):
    gen = DDIM(tiny_config(), device="cpu")
    perturb(gen)
    gen.save(tmp_path / "gen")
    assert (tmp_path / "gen" / "weights.safetensors").exists() and (tmp_path / "gen" / "config.json").exists()
    loaded = registry.get("ddim").load(tmp_path / "gen")
    assert torch.equal(gen.sample(4, seed=11, steps=4), loaded.sample(4, seed=11, steps=4))


def test_typed_config_checks_ddim_settings_and_loads_older_configs():
    config = DDIMConfig.from_preset(resolution=32, channels=1, preset="quick", image_count=150)
    assert config.to_dict() == DDIM.default_config(resolution=32, channels=1, preset="quick", image_count=150)
    changed = config.replace(sampler="ddim", channel_mults=[1, 2], min_snr_gamma=None, compile_mode="reduce-overhead")
    assert (changed.sampler, changed.channel_mults, changed.min_snr_gamma) == ("ddim", [1, 2], None)
    with pytest.raises(ConfigError) as error:
        config.replace(sampler="euler", objective="x0", channel_mults=[1, "2"], patch_size=3, dropout=2)
    problems = " ".join(error.value.problems)
    assert "'sampler' must be one of 'ddim', 'dpmpp2m'." in problems
    assert "'objective' must be one of 'v', 'eps'." in problems
    assert "'channel_mults' must be like [1, 2, 2]" in problems and "'patch_size' must be one of 1, 2, 4." in problems
    assert "'dropout' must be between 0 and 0.9." in problems
    # A config saved before the sampler settings existed, with a key only tiny test models use.
    older = {k: v for k, v in tiny_config().items() if k not in ("sampler", "cpu_sampling_bf16", "min_snr_plus_one")}
    loaded = DDIMConfig.from_dict(older)
    assert loaded.sampler == "dpmpp2m" and loaded.cpu_sampling_bf16 and loaded["groups"] == 4


def test_the_trainer_checkpoint_holds_the_ddim_architecture(tmp_path):
    """The loop, cancel, resume and checkpoints are tested once in test_trainer.py; here: DDIM's keys."""
    DDIM(tiny_config(total_steps=4), device="cpu").train(tiny_images(16), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="another architecture"):
        DDIM(tiny_config(total_steps=8, base_channels=16), device="cpu").train(tiny_images(16), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="another architecture"):
        DDIM(tiny_config(total_steps=8, objective="eps"), device="cpu").train(tiny_images(16), checkpoint_dir=tmp_path)
