"""The DCGAN generator type with tiny models (pure PyTorch, no Django)."""

from pathlib import Path

import pytest
import torch

from apps.ml.dcgan import DCGAN
from apps.ml.dcgan.model import Discriminator, Generator
from apps.ml.engine import registry
from apps.ml.engine.base import GeneratorType
from apps.ml.engine.device import pick_device
from apps.ml.quality.diversity import mean_pairwise_distance, mode_collapse_warning
from tests.ml.dcgan.tiny import blobs, tiny_config


def test_registered_under_dcgan():
    assert registry.get("dcgan") is DCGAN
    assert issubclass(DCGAN, GeneratorType)
    assert ("dcgan", DCGAN.label) in registry.choices()


def test_default_config_scales_with_preset_device_and_dataset_size():
    def cfg(**kw):
        base = dict(resolution=64, channels=1, preset="quick", image_count=500, device="cpu")
        return DCGAN.default_config(**{**base, **kw})

    quick, standard, long = (cfg(preset=p) for p in ("quick", "standard", "long"))
    for config in (quick, standard, long):
        for key in ("resolution", "channels", "preset", "total_steps", "batch_size", "checkpoint_every"):
            assert key in config
    assert quick["total_steps"] < standard["total_steps"] < long["total_steps"]
    assert quick["ngf"] <= standard["ngf"] <= long["ngf"]
    assert cfg(preset="standard", image_count=2000)["total_steps"] > standard["total_steps"]
    gpu = cfg(device="cuda")
    assert gpu["ngf"] > quick["ngf"] and gpu["batch_size"] > quick["batch_size"]
    assert gpu["amp_bf16"] and not quick["amp_bf16"]
    assert quick["data_efficient"] and quick["diffaugment"] and quick["spectral_norm"]
    with pytest.raises(ValueError):
        cfg(resolution=48)


@pytest.mark.parametrize("resolution", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_networks_have_the_right_shapes(resolution, channels):
    G = Generator(resolution=resolution, channels=channels, nz=8, ngf=2)
    D = Discriminator(resolution=resolution, channels=channels, ndf=2, spectral_norm=resolution == 64)
    images = G(torch.randn(3, 8))
    assert images.shape == (3, channels, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1
    assert D(images).shape == (3,)


def test_plain_config_is_the_tutorial_dcgan():
    model = DCGAN(tiny_config(data_efficient=False))
    assert model.config["diffaugment"] == "" and not model.config["spectral_norm"]
    assert model.config["real_label"] == 1.0 and model.config["r1_gamma"] == 0 and not model.config["ema"]


@pytest.mark.parametrize("data_efficient", [True, False])
def test_training_reduces_the_discriminator_loss(tmp_path, data_efficient):
    config = tiny_config(
        total_steps=40, ngf=8, ndf=8, report_every=1, checkpoint_every=40, data_efficient=data_efficient
    )
    reports = []
    result = DCGAN(config).train(blobs(), checkpoint_dir=tmp_path, on_progress=reports.append)
    d_losses = [p.losses["d"] for p in reports]
    assert len(d_losses) == 40
    # The first loss is the untrained discriminator's; it learns to tell real from fake.
    assert sum(d_losses[-10:]) / 10 < d_losses[0] - 0.1
    assert result.final_losses["d"] == d_losses[-1]


def test_training_moves_the_generator_toward_the_data(tmp_path):
    """The blobs are mostly black, so the generator's images must get darker; a sign error,
    a missing optimizer step or a broken EMA fails this."""
    model = DCGAN(tiny_config(total_steps=40, ngf=8, ndf=8, checkpoint_every=40))
    before = model.sample(32, seed=1).float().mean()
    model.train(blobs(), checkpoint_dir=tmp_path)
    after = model.sample(32, seed=1).float().mean()
    assert after < before - 10  # uint8 mean brightness fell toward the black background


def test_progress_checkpoints_and_grids(tmp_path):
    reports = []
    result = DCGAN(tiny_config()).train(blobs(), checkpoint_dir=tmp_path, on_progress=reports.append)
    assert [p.step for p in reports] == [3, 6, 9, 12]
    assert all(set(p.losses) == {"d", "g"} for p in reports)
    grids = [p.sample_grid for p in reports if p.checkpointed]
    assert [g.name for g in grids] == ["step_000006.png", "step_000012.png"]
    assert all(g.exists() for g in grids)
    assert result.steps == 12 and not result.stopped_early
    # No pickles anywhere: only safetensors, PNG and JSON files.
    suffixes = {p.suffix for p in Path(tmp_path).rglob("*") if p.is_file()}
    assert suffixes <= {".safetensors", ".png", ".json"}


def test_training_parts_hold_the_whole_state(tmp_path):
    """Both networks, both optimizers, the EMA and the spectral-norm vectors are in the checkpoint:
    a run stopped half-way and resumed trains the same weights as one that never stopped.
    (The loop itself, cancel, resume and checkpoints are tested once in test_trainer.py.)"""
    config = tiny_config(total_steps=8, report_every=1, checkpoint_every=100)
    whole = DCGAN(config)
    whole.train(blobs(), checkpoint_dir=tmp_path / "whole")
    calls = iter(range(100))
    DCGAN(config).train(blobs(), checkpoint_dir=tmp_path / "parts", should_stop=lambda: next(calls) >= 5)
    resumed = DCGAN(config)
    resumed.train(blobs(), checkpoint_dir=tmp_path / "parts")
    assert torch.equal(resumed.sample(8, seed=2), whole.sample(8, seed=2))
    # The network widths are part of the architecture: a wider DCGAN refuses this checkpoint.
    with pytest.raises(ValueError, match="another architecture"):
        DCGAN(tiny_config(total_steps=12, ngf=8)).train(blobs(), checkpoint_dir=tmp_path / "parts")


def test_sampling_is_deterministic_for_a_seed(tmp_path):
    model = DCGAN(tiny_config())
    model.train(blobs(), checkpoint_dir=tmp_path)
    a = model.sample(10, seed=3)
    assert a.dtype == torch.uint8 and a.shape == (10, 1, 32, 32) and a.device.type == "cpu"
    assert torch.equal(a, model.sample(10, seed=3))
    assert torch.equal(a[:4], model.sample(4, seed=3, batch_size=3))  # independent of n and batching
    assert not torch.equal(a, model.sample(10, seed=4))


def test_sampling_refuses_labels_and_guidance():
    model = DCGAN(tiny_config())
    with pytest.raises(ValueError, match="dcgan learns no classes.*leave out labels"):
        model.sample(2, seed=0, labels=[0, 1])
    with pytest.raises(ValueError, match="leave out guidance"):
        model.sample(2, seed=0, guidance=2.0)
    assert model.sample(2, seed=0, steps=30).shape == (2, 1, 32, 32)  # steps: ignored, a GAN has none


def test_save_then_load_gives_identical_samples(tmp_path):
    model = DCGAN(tiny_config())
    model.train(blobs(), checkpoint_dir=tmp_path / "run")
    model.save(tmp_path / "model")
    # The trained discriminator too: what a generator fine-tuned from this one starts from (FreezeD).
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "config.json",
        "discriminator.safetensors",
        "weights.safetensors",
    ]
    loaded = DCGAN.load(tmp_path / "model")
    assert loaded.config == model.config
    assert torch.equal(loaded.sample(8, seed=11), model.sample(8, seed=11))


def test_mode_collapse_detector():
    varied = blobs(16)
    same = varied[:1].expand(16, -1, -1, -1)
    assert mean_pairwise_distance(same) == 0.0
    real = mean_pairwise_distance(varied)
    assert real > 0.2
    warning = mode_collapse_warning(mean_pairwise_distance(same), real, step=100)
    assert warning.startswith("mode collapse: samples look alike") and "step 100" in warning
    assert mode_collapse_warning(real * 0.9, real) is None


def test_diversity_is_the_same_for_uint8_and_float_and_subsamples_large_sets():
    images = blobs(20)
    as_uint8 = ((images + 1) * 127.5).round().to(torch.uint8)
    assert mean_pairwise_distance(images) == pytest.approx(mean_pairwise_distance(as_uint8), abs=1e-3)
    noise = torch.rand(300, 1, 8, 8) * 2 - 1
    assert mean_pairwise_distance(noise, max_images=50) == pytest.approx(mean_pairwise_distance(noise), rel=0.1)


def test_training_reports_collapse_when_samples_are_alike(tmp_path):
    """Real images are very varied; an almost untrained generator makes near-identical images."""
    config = tiny_config(total_steps=4, checkpoint_every=2, report_every=1, lr_g=0.0)
    reports = []
    varied = torch.rand(32, 1, 32, 32) * 2 - 1
    result = DCGAN(config).train(varied, checkpoint_dir=tmp_path, on_progress=reports.append)
    checkpoint_warnings = [w for p in reports if p.checkpointed for w in p.warnings]
    assert any(w.startswith("mode collapse") for w in checkpoint_warnings)
    assert any(w.startswith("mode collapse") for w in result.warnings)


def test_pick_device_honours_the_environment(monkeypatch):
    monkeypatch.setenv("SYNTHGEN_DEVICE", "cpu")
    assert pick_device() == "cpu"
    monkeypatch.delenv("SYNTHGEN_DEVICE")
    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("SYNTHGEN_DEVICE", "cuda")
        with pytest.raises(RuntimeError):
            pick_device()
