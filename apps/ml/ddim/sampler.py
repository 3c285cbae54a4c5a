"""DDIM sampling (Song et al. 2021): few-step generation from a trained denoiser.

One step from ``t`` to an earlier ``s`` with signal shares ``a_t`` and ``a_s``::

    x0, eps = prediction of the network at (x_t, t)
    sigma   = eta * sqrt((1 - a_s) / (1 - a_t)) * sqrt(1 - a_t / a_s)
    x_s     = sqrt(a_s) * x0 + sqrt(1 - a_s - sigma^2) * eps + sigma * z

``eta = 0`` is deterministic; ``eta = 1`` is DDPM-like ancestral sampling. The
last step goes to ``a_s = 1``, so it returns the predicted ``x0``.

DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling
of Diffusion Probabilistic Models", Algorithm 2) solves the same probability-flow
ODE with a second-order multistep update in its data-prediction form. With
``alpha = sqrt(a)``, ``sigma = sqrt(1 - a)``, ``lambda = log(alpha / sigma)`` and
the step size ``h = lambda_s - lambda_t``::

    D   = x0                                          (first step)
    D   = (1 + 1/(2r)) * x0 - 1/(2r) * x0_previous    (later steps; r = h_previous / h)
    x_s = (sigma_s / sigma_t) * x_t + alpha_s * (1 - exp(-h)) * D

Its first step is exactly a DDIM step; the later ones reuse the previous step's
``x0`` to cancel the first-order error, so it needs far fewer network calls for
the same images. The last step goes to clean data (``h`` infinite) and is first
order: it returns the predicted ``x0``, as DDIM's does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from apps.ml.ddim.schedule import CosineSchedule, predict_x0_eps

MIN_STEPS, MAX_STEPS = 1, 1000
SAMPLERS = ("ddim", "dpmpp2m")

# denoise(x_t, t) -> network output; t is a float tensor [B] of timesteps.
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ddim_timesteps(train_timesteps: int, steps: int) -> list[int]:
    """``steps`` timesteps from the noisiest (T - 1) down, evenly spread, no repeats."""
    if not MIN_STEPS <= steps <= min(MAX_STEPS, train_timesteps):
        raise ValueError(f"steps must be between {MIN_STEPS} and {min(MAX_STEPS, train_timesteps)}, got {steps}")
    # Spread over (0, T-1]: the first step always starts from pure noise.
    points = torch.linspace(train_timesteps - 1, 0, steps + 1, dtype=torch.float64)[:-1]
    return [int(round(p)) for p in points.tolist()]


def ddim_step(
    x_t: torch.Tensor,
    model_out: torch.Tensor,
    alpha_t: torch.Tensor | float,
    alpha_s: torch.Tensor | float,
    *,
    objective: str,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update from signal share ``alpha_t`` to ``alpha_s`` (> alpha_t).

    Returns ``(x_s, x0)``. With ``clip`` the predicted ``x0`` is clamped to the
    data range [-1, 1] and ``eps`` recomputed from it so the two stay consistent.
    ``noise`` is required when ``eta > 0``.
    """
    alpha_t = torch.as_tensor(alpha_t, dtype=x_t.dtype, device=x_t.device)
    alpha_s = torch.as_tensor(alpha_s, dtype=x_t.dtype, device=x_t.device)
    x0, eps = predict_x0_eps(x_t, model_out, alpha_t, objective)
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = (x_t - alpha_t.sqrt() * x0) / (1 - alpha_t).sqrt()
    x_s = alpha_s.sqrt() * x0
    if eta > 0:
        if noise is None:
            raise ValueError("eta > 0 needs noise")
        sigma = eta * ((1 - alpha_s) / (1 - alpha_t) * (1 - alpha_t / alpha_s)).clamp(min=0).sqrt()
        x_s = x_s + (1 - alpha_s - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise
    else:
        x_s = x_s + (1 - alpha_s).sqrt() * eps
    return x_s, x0


@torch.no_grad()
def ddim_sample(
    denoise: Denoiser,
    schedule: CosineSchedule,
    shape: tuple[int, ...],
    *,
    steps: int,
    objective: str,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip: bool = True,
) -> torch.Tensor:
    """Images in [-1, 1] (float32, on ``device``) drawn with ``steps`` DDIM steps.

    All randomness comes from ``generator`` (made on ``device``), so the same
    generator seed gives the same images.
    """
    device = torch.device(device)
    alpha_bar = schedule.alpha_bar_on(device)
    one = torch.ones((), device=device)
    x = torch.randn(shape, generator=generator, device=device)
    timesteps = ddim_timesteps(schedule.timesteps, steps)
    for i, t in enumerate(timesteps):
        alpha_t = alpha_bar[t]
        alpha_s = alpha_bar[timesteps[i + 1]] if i + 1 < len(timesteps) else one
        t_batch = torch.full((shape[0],), float(t), device=device)
        out = denoise(x, t_batch).float()
        noise = torch.randn(shape, generator=generator, device=device) if eta > 0 else None
        x, _ = ddim_step(x, out, alpha_t, alpha_s, objective=objective, eta=eta, noise=noise, clip=clip)
    return x


@torch.no_grad()
def dpmpp_2m_sample(
    denoise: Denoiser,
    schedule: CosineSchedule,
    shape: tuple[int, ...],
    *,
    steps: int,
    objective: str,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip: bool = True,
) -> torch.Tensor:
    """Images in [-1, 1] (float32, on ``device``) drawn with ``steps`` DPM-Solver++(2M) steps.

    ``steps`` network calls at the same timesteps as :func:`ddim_sample`; the
    only randomness is the starting noise, drawn from ``generator``. With
    ``clip`` each predicted ``x0`` is clamped to [-1, 1] (the data-prediction
    form allows it: the update combines ``x0`` estimates, not noise estimates).
    """
    device = torch.device(device)
    alpha_bar = schedule.alpha_bar_on(device).double()
    x = torch.randn(shape, generator=generator, device=device)
    timesteps = ddim_timesteps(schedule.timesteps, steps)
    # Per-step scalars in float64 (0-d tensors on the device); lambda runs from about -10 up.
    a = alpha_bar[timesteps]
    alphas, sigmas = a.sqrt(), (1 - a).sqrt()
    lambdas = alphas.log() - sigmas.log()
    previous_x0: torch.Tensor | None = None
    previous_h: torch.Tensor | None = None
    for i, t in enumerate(timesteps):
        t_batch = torch.full((shape[0],), float(t), device=device)
        out = denoise(x, t_batch).float()
        x0, _ = predict_x0_eps(x, out, alpha_bar[t].float(), objective)
        if clip:
            x0 = x0.clamp(-1, 1)
        if i + 1 == len(timesteps):  # to clean data: sigma_s = 0, alpha_s = 1, first order
            return x0
        h = lambdas[i + 1] - lambdas[i]
        if previous_x0 is None or previous_h is None:  # the first step (the two are set together)
            d = x0
        else:
            half_inverse_r = (h / previous_h / 2).float()  # 1 / (2 r) with r = h_previous / h
            d = x0 + half_inverse_r * (x0 - previous_x0)
        ratio = (sigmas[i + 1] / sigmas[i]).float()
        gain = (alphas[i + 1] * -torch.expm1(-h)).float()
        x = ratio * x + gain * d
        previous_x0, previous_h = x0, h
    return x


def run_sampler(
    sampler: str,
    denoise: Denoiser,
    schedule: CosineSchedule,
    shape: tuple[int, ...],
    *,
    steps: int,
    objective: str,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Images in [-1, 1] from the sampler named ``sampler`` (one of :data:`SAMPLERS`).

    ``eta`` (stochastic DDIM) applies to ``"ddim"`` only; DPM-Solver++(2M) is deterministic.
    """
    if sampler == "ddim":
        return ddim_sample(
            denoise, schedule, shape, steps=steps, objective=objective, eta=eta, generator=generator, device=device
        )
    if sampler == "dpmpp2m":
        if eta:
            raise ValueError("eta > 0 is stochastic DDIM; use sampler 'ddim' for it")
        return dpmpp_2m_sample(
            denoise, schedule, shape, steps=steps, objective=objective, generator=generator, device=device
        )
    raise ValueError(f"unknown sampler {sampler!r}; use one of {SAMPLERS}")
