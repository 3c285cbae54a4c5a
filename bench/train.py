"""Training throughput of our DDIM type against huggingface diffusers, measured in one run.

Both sides train the same U-Net size (same widths, depth, attention levels,
resolution and batch) on random images already on the device:

* ours:      ``DDIM.training_step`` and the shared trainer's EMA update - the exact step
             the generator type trains with (bf16 autocast, channels-last, torch.compile,
             fused AdamW, EMA);
* diffusers: ``UNet2DModel`` + ``DDPMScheduler`` with the recipe of diffusers'
             unconditional training example: bf16 autocast (what accelerate's
             mixed precision does), AdamW, gradient clipping, ``EMAModel``.

Prints a table: parameters, training FLOPs per image (forward + backward,
counted by ``torch.utils.flop_counter``), images/s, and the share of the GPU's
dense bf16 peak that those FLOPs/s reach. Only the ML package is imported (no Django).

    python bench/train.py --device cuda --batch 64              # the DDPM CIFAR-10 size (35.7M)
    python bench/train.py --device cpu --preset tiny --steps 3  # a quick check on a CPU
    python bench/train.py --device cpu --preset app --channels 1 --batch 32 --threads 1  # the app's CPU model

``--preset app`` is the app's own CPU recipe for 150 images (``DDIMConfig.from_preset(..., preset="quick",
image_count=150, device=...)``: its width, depth, attention, 2x2 patches and dropout). Our U-Net folds
the 2x2 patches into channels itself; ``UNet2DModel`` gets the folded map (half the resolution, 4x the
channels) and the same widths, so both do the same work per image. On a CPU neither side compiles unless
``--compile`` (ours only) and both run in float32 unless ``--amp-bf16`` (bf16 autocast for both; ours
only where the CPU has bf16 instructions). Step times are reported as the mean (images/s), the median and
per CPU-second of this process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `apps`

from apps.ml.ddim import DDIM  # noqa: E402

# Dense bf16 tensor-core peak in TFLOP/s (datasheet, SXM parts).
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}

# Model sizes: "ddpm" is the DDPM CIFAR-10 U-Net (35.7M parameters in diffusers' layout).
SHAPES = {
    "ddpm": dict(base_channels=128, channel_mults=[1, 2, 2, 2], num_res_blocks=2, attention_resolutions=[16]),
    "small": dict(base_channels=64, channel_mults=[1, 2, 2], num_res_blocks=1, attention_resolutions=[8]),
    "tiny": dict(
        base_channels=16, channel_mults=[1, 2], num_res_blocks=1, attention_resolutions=[8], groups=8, head_channels=16
    ),
}


def add_common_arguments(parser: argparse.ArgumentParser, presets: tuple[str, ...] = ()) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="ddpm", choices=sorted([*SHAPES, *presets]), help="model size")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--head-channels", type=int, default=None, help="attention head width (default 64)")
    parser.add_argument("--no-compile", action="store_true", help="run ours without torch.compile")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode for ours, e.g. reduce-overhead")
    parser.add_argument("--no-diffusers", action="store_true", help="skip the reference")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")


def our_config(args) -> dict:
    """A DDIM config with the benchmark's shape; the speed settings of the device's preset."""
    compile_on = (getattr(args, "compile", False) or args.device.startswith("cuda")) and not args.no_compile
    if args.preset == "app":  # the app's own recipe for 150 images on this device, batch from the command
        config = DDIM.default_config(
            resolution=args.resolution, channels=args.channels, preset="quick", image_count=150, device=args.device
        )
        config.update(batch_size=args.batch, compile=compile_on, compile_mode=args.compile_mode)
        config.setdefault("groups", 32)
        if getattr(args, "amp_bf16", False):
            config["amp_bf16"] = True
        return config
    config = DDIM.default_config(
        resolution=args.resolution, channels=args.channels, preset="quick", image_count=1000, device=args.device
    )
    config.update(patch_size=1, head_channels=64, groups=32, batch_size=args.batch, dropout=0.0, compile=compile_on)
    config.update(SHAPES[args.preset], compile_mode=args.compile_mode)
    if args.head_channels:
        config["head_channels"] = args.head_channels
    if getattr(args, "amp_bf16", False):
        config["amp_bf16"] = True
    return config


def folded_config(config: dict) -> dict:
    """``config`` as ``UNet2DModel`` sees it: 2x2 patches folded into channels (half the resolution, 4x the
    channels), group norm groups that divide every width."""
    config = dict(config)
    patch = config.get("patch_size", 1)
    config.update(resolution=config["resolution"] // patch, channels=config["channels"] * patch**2, patch_size=1)
    widths = [config["base_channels"] * m for m in config["channel_mults"]]
    groups = min(config.get("groups", 32), 32)
    while any(w % groups for w in widths):
        groups -= 1
    config["groups"] = groups
    return config


def diffusers_unet(config: dict):
    """``diffusers.UNet2DModel`` with the same layout as our U-Net for ``config``."""
    from diffusers import UNet2DModel

    down, up = [], []
    for level, _ in enumerate(config["channel_mults"]):
        size = config["resolution"] >> level
        attn = size in config["attention_resolutions"]
        down.append("AttnDownBlock2D" if attn else "DownBlock2D")
        up.insert(0, "AttnUpBlock2D" if attn else "UpBlock2D")
    return UNet2DModel(
        sample_size=config["resolution"],
        in_channels=config["channels"],
        out_channels=config["channels"],
        layers_per_block=config["num_res_blocks"],
        block_out_channels=[config["base_channels"] * m for m in config["channel_mults"]],
        down_block_types=down,
        up_block_types=up,
        attention_head_dim=config["head_channels"],
        norm_num_groups=config["groups"],
        resnet_time_scale_shift="scale_shift",  # as ours: time embedding scales and shifts the norm
        dropout=config.get("dropout", 0.0),
    )


def flops_per_image(forward, batch: int = 2, backward: bool = True) -> float:
    """FLOPs of one image through ``forward()`` (a closure returning an output for ``batch`` images)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = forward()
        if backward:
            out.float().square().mean().backward()
    return counter.get_total_flops() / batch


def peak_tflops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_steps(step, steps: int, warmup: int, device: str) -> tuple[float, float, float]:
    """(mean, median, mean CPU) seconds per call of ``step()`` after ``warmup`` untimed calls. Each call is
    timed apart (with a device sync on CUDA), so the median ignores steps slowed by other work on the
    machine; the CPU seconds (this process's, all threads) are what a CPU step costs when the cores are
    shared (with one thread, wall time minus the time other processes held the core)."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    cpu_start = time.process_time()
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu_start) / steps
    ordered = sorted(times)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return sum(times) / len(times), median, cpu


def bench_ours(args) -> dict:
    config = our_config(args)
    torch.manual_seed(0)
    gen = DDIM(config, device=args.device)
    parts = gen.training_parts()
    r, c = args.resolution, args.channels
    data = torch.rand(1024, c, r, r, device=args.device) * 2 - 1
    rng = torch.Generator(args.device).manual_seed(0)
    x = torch.randn(2, c, r, r, device=args.device)
    with gen._autocast():
        flops = flops_per_image(lambda: gen.model(x, torch.tensor([10.0, 500.0], device=args.device)))
    gen.model.zero_grad(set_to_none=True)
    steps = itertools.count()

    def step() -> None:  # what the trainer runs per step, less its per-step reseeding (microseconds)
        index = next(steps)
        gen.training_step(parts, data, index, rng)
        parts.ema.update(gen.model, index)

    compile_start = time.perf_counter()
    step()
    sync(args.device)
    first_step = time.perf_counter() - compile_start
    seconds, median, cpu = timed_steps(step, args.steps, args.warmup, args.device)
    mode = f", {args.compile_mode}" if args.compile_mode and config["compile"] else ""
    precision = "bf16" if isinstance(gen._autocast(), torch.autocast) else "fp32"
    return {
        "name": f"ours (DDIM.training_step{mode})",
        "params": gen.parameter_count(),
        "flops": flops,
        "images_per_s": args.batch / seconds,
        "images_per_s_median": args.batch / median,
        "images_per_cpu_s": args.batch / cpu,
        "first_step_s": first_step,
        "compile": config["compile"],
        "precision": precision,
    }


def bench_diffusers(args) -> dict:
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    config = folded_config(our_config(args))
    torch.manual_seed(0)
    unet = diffusers_unet(config).to(args.device)
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, foreach=True)
    r, c = config["resolution"], config["channels"]  # folded when ours works on 2x2 patches
    data = torch.rand(1024, c, r, r, device=args.device) * 2 - 1
    on_cuda = args.device.startswith("cuda")
    bf16 = on_cuda or getattr(args, "amp_bf16", False)
    autocast = torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=bf16)

    x = torch.randn(2, c, r, r, device=args.device)
    with autocast:
        flops = flops_per_image(lambda: unet(x, torch.tensor([10, 500], device=args.device)).sample)
    unet.zero_grad(set_to_none=True)

    def step():
        clean = data[torch.randint(0, data.shape[0], (args.batch,), device=args.device)]
        noise = torch.randn_like(clean)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), device=args.device)
        noisy = scheduler.add_noise(clean, noise, t)
        with autocast:
            pred = unet(noisy, t).sample
        loss = F.mse_loss(pred.float(), scheduler.get_velocity(clean, noise, t))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())

    seconds, median, cpu = timed_steps(step, args.steps, args.warmup, args.device)
    return {
        "name": "diffusers UNet2DModel+DDPMScheduler",
        "params": sum(p.numel() for p in unet.parameters()),
        "flops": flops,
        "images_per_s": args.batch / seconds,
        "images_per_s_median": args.batch / median,
        "images_per_cpu_s": args.batch / cpu,
        "compile": False,
        "precision": "bf16" if bf16 else "fp32",
    }


def print_rows(title: str, rows: list[dict], peak: float | None, columns: list[tuple[str, str]]) -> None:
    """A plain-text table; ``columns`` are (header, key) pairs, and a share-of-peak column is added."""
    print(f"\n{title}")
    headers = [h for h, _ in columns] + ["TFLOP/s", "% of bf16 peak"]
    table = [headers]
    for row in rows:
        achieved = row["flops"] * row["images_per_s"] / 1e12
        cells = [_fmt(row.get(key)) for _, key in columns]
        cells += [f"{achieved:.2f}", f"{100 * achieved / peak:.2f}" if peak else "-"]
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)))


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, presets=("app",))
    parser.add_argument("--compile", action="store_true", help="compile ours on a CPU too (on CUDA it is on)")
    parser.add_argument(
        "--amp-bf16", action="store_true", help="bf16 autocast for both sides on a CPU (on CUDA it is on)"
    )
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per side")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps after the first (compiling) one")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = [bench_ours(args)]
    if not args.no_diffusers:
        rows.append(bench_diffusers(args))
    peak = peak_tflops(args.device)
    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    )
    for row in rows:
        row["gflops_per_image"] = row["flops"] / 1e9
    print_rows(
        f"DDIM training: {device_name}, {args.resolution} px x {args.channels} ch, batch {args.batch}, "
        f"model '{args.preset}', torch {torch.__version__}",
        rows,
        peak,
        [
            ("implementation", "name"),
            ("precision", "precision"),
            ("compile", "compile"),
            ("params", "params"),
            ("train GFLOP/img", "gflops_per_image"),
            ("images/s", "images_per_s"),
            ("images/s (median step)", "images_per_s_median"),
            ("images/CPU-s", "images_per_cpu_s"),
        ],
    )
    if len(rows) == 2:
        print(
            f"speed-up ours / diffusers: {rows[0]['images_per_s'] / rows[1]['images_per_s']:.2f}x "
            f"(median steps: {rows[0]['images_per_s_median'] / rows[1]['images_per_s_median']:.2f}x; "
            f"CPU time: {rows[0]['images_per_cpu_s'] / rows[1]['images_per_cpu_s']:.2f}x; "
            f"first step incl. compile: {rows[0]['first_step_s']:.1f} s)"
        )
    result = {
        "device": device_name,
        "peak_tflops": peak,
        "batch": args.batch,
        "resolution": args.resolution,
        "preset": args.preset,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
