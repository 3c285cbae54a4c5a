"""Fine-tuning from a base generator (apps.ml.engine.transfer): tiny models on the CPU, real files."""

from __future__ import annotations

import pytest
import torch

from apps.ml.dcgan import DCGAN
from apps.ml.ddim import DDIM
from apps.ml.ddim import config as ddim_config
from apps.ml.ddim.config import FINE_TUNE_LR, DDIMConfig
from apps.ml.engine.config import ConfigError, build_config
from apps.ml.engine.transfer import LABEL_EMBED, TIME_BIAS, read_base, remap_class_rows, start_from
from tests.ml.dcgan.tiny import blobs
from tests.ml.dcgan.tiny import tiny_config as dcgan_config
from tests.ml.ddim.tiny import tiny_config, tiny_images

torch.set_num_threads(1)


def trained_base(tmp_path, **config) -> DDIM:
    base = DDIM(tiny_config(total_steps=4, **config), device="cpu")
    labels = torch.arange(16) % max(1, base.config.num_classes) if base.config.num_classes else None
    base.train(tiny_images(16), labels=labels, checkpoint_dir=tmp_path / "base-ckpt")
    base.save(tmp_path / "base")
    return base


def test_fine_tuning_starts_from_the_base_changes_its_weights_and_keeps_its_architecture(tmp_path):
    base = trained_base(tmp_path)
    child_config = build_config(
        DDIM,
        resolution=32,
        channels=1,
        preset="quick",
        image_count=16,
        device="cpu",
        base=read_base(tmp_path / "base").recipe_config(),
    )
    # The base's shape, whatever this request's preset would have built.
    for key in DDIMConfig.BASE_SHAPE:
        assert child_config[key] == base.config[key], key
    child_config.update(resolution=8, total_steps=3, checkpoint_every=3, report_every=1, grid_images=2, grid_steps=2)
    child = DDIM(child_config, device="cpu")
    start_from(child, read_base(tmp_path / "base"))
    parts = child.training_parts()
    base_state = base.ema.state_dict()
    for name, value in parts.networks["model"].state_dict().items():  # the raw network and the EMA start at the base
        assert torch.equal(value, base_state[name]), name
        assert torch.equal(parts.ema.state_dict()[name], base_state[name]), name
    child.train(tiny_images(16, seed=3), checkpoint_dir=tmp_path / "child-ckpt")
    after = child.ema.state_dict()
    assert after.keys() == base_state.keys()
    assert all(after[k].shape == base_state[k].shape for k in after)
    assert any(not torch.equal(after[k], base_state[k]) for k in after if after[k].is_floating_point())


def test_the_fine_tuning_recipe_replaces_the_presets_unless_the_user_sets_it(tmp_path):
    base = trained_base(tmp_path).config.to_dict()
    plain = build_config(DDIM, resolution=32, channels=1, preset="quick", image_count=150, device="cpu")
    tuned = build_config(DDIM, resolution=32, channels=1, preset="quick", image_count=150, device="cpu", base=base)
    assert tuned["total_steps"] == round(plain["total_steps"] / 3)
    assert tuned["learning_rate"] == pytest.approx(plain["learning_rate"] * FINE_TUNE_LR)
    assert 1 <= tuned["warmup_steps"] < plain["warmup_steps"]
    chosen = build_config(
        DDIM,
        resolution=32,
        channels=1,
        preset="quick",
        image_count=150,
        device="cpu",
        base=base,
        options={"total_steps": 777, "learning_rate": 0.01},
    )
    assert chosen["total_steps"] == 777 and chosen["learning_rate"] == 0.01
    with pytest.raises(ConfigError, match="base_channels"):  # the shape is the base's
        build_config(
            DDIM,
            resolution=32,
            channels=1,
            preset="quick",
            image_count=150,
            device="cpu",
            base=base,
            options={"base_channels": 16},
        )
    assert base["augment_p"] > 0
    with pytest.raises(ConfigError, match="augmentation embedding"):  # so is the augmentation embedding
        build_config(
            DDIM,
            resolution=32,
            channels=1,
            preset="quick",
            image_count=150,
            device="cpu",
            base=base,
            options={"augment_p": 0.0},
        )
    assert (
        build_config(
            DDIM,
            resolution=32,
            channels=1,
            preset="quick",
            image_count=150,
            device="cpu",
            base=base,
            options={"augment_p": 0.3},
        )["augment_p"]
        == 0.3
    )  # its strength may change


def test_the_fine_tuning_learning_rate_factor_is_applied(tmp_path, monkeypatch):
    """FINE_TUNE_LR is 1.0 today (measured: bench/README.md, #20), so a test at that value cannot tell "the recipe
    set the rate" from "the recipe was ignored": with another factor, the child's rate follows it."""
    base = trained_base(tmp_path).config.to_dict()
    plain = build_config(DDIM, resolution=32, channels=1, preset="quick", image_count=150, device="cpu")
    monkeypatch.setattr(ddim_config, "FINE_TUNE_LR", 0.25)
    tuned = build_config(DDIM, resolution=32, channels=1, preset="quick", image_count=150, device="cpu", base=base)
    assert tuned["learning_rate"] == pytest.approx(plain["learning_rate"] * 0.25)


def test_new_classes_get_new_rows_and_known_classes_keep_theirs(tmp_path):
    base = trained_base(tmp_path, num_classes=2, classes=["sandal", "shirt"])
    rows = base.ema.state_dict()[LABEL_EMBED]
    child = DDIM(tiny_config(num_classes=3, classes=["bag", "sandal", "shirt"], total_steps=2), device="cpu")
    weights = start_from(child, read_base(tmp_path / "base"))["model"]
    new_rows = weights[LABEL_EMBED]
    assert new_rows.shape == (4, rows.shape[1])
    assert torch.equal(new_rows[1], rows[0]) and torch.equal(new_rows[2], rows[1])  # mapped by name, not index
    assert torch.equal(new_rows[0], rows[2])  # the new class starts from the base's "no label" row
    assert torch.equal(new_rows[3], rows[2])  # "no label" stays the base's
    parts = child.training_parts()  # the child's network takes them
    assert torch.equal(parts.networks["model"].label_embed.weight, new_rows)
    child.train(tiny_images(16), labels=torch.arange(16) % 3, checkpoint_dir=tmp_path / "child")
    assert child.sample(2, seed=0, labels=["bag", "sandal"], steps=2).shape == (2, 1, 8, 8)


def test_unconditional_bases_and_children_start_as_the_base_exactly():
    torch.manual_seed(0)
    state = {TIME_BIAS: torch.randn(6), "other": torch.randn(2)}
    conditional, kept = remap_class_rows(state, base_classes=[], base_num_classes=0, classes=["a", "b"])
    assert torch.equal(conditional[LABEL_EMBED], torch.zeros(3, 6)) and kept["new"] == ["a", "b"]
    rows = torch.randn(3, 6)
    folded, _ = remap_class_rows({**state, LABEL_EMBED: rows}, base_classes=["a", "b"], base_num_classes=2, classes=[])
    assert LABEL_EMBED not in folded and torch.allclose(folded[TIME_BIAS], state[TIME_BIAS] + rows[2])


def test_an_unconditional_child_of_a_conditional_base_predicts_its_unconditional_output(tmp_path):
    base = trained_base(tmp_path, num_classes=2, classes=["sandal", "shirt"])
    child = DDIM(tiny_config(), device="cpu")
    start_from(child, read_base(tmp_path / "base"))
    net = child.training_parts().networks["model"].eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10.0, 500.0])
    with torch.no_grad():
        assert torch.allclose(net(x, t), base.ema.model.eval()(x, t), atol=1e-5)


def test_dcgan_starts_both_networks_from_the_base_and_freezes_the_discriminators_first_blocks(tmp_path):
    base = DCGAN(dcgan_config(total_steps=4, checkpoint_every=4), device="cpu")
    base.train(blobs(16), checkpoint_dir=tmp_path / "base-ckpt")
    base.save(tmp_path / "base")
    assert (tmp_path / "base" / "discriminator.safetensors").exists()
    loaded = read_base(tmp_path / "base")
    config = build_config(
        DCGAN, resolution=32, channels=1, preset="quick", image_count=16, device="cpu", base=loaded.recipe_config()
    )
    assert config["freeze_d_blocks"] == 1 and config["ngf"] == 4
    config.update(total_steps=3, batch_size=8, checkpoint_every=3, report_every=1)
    child = DCGAN(config, device="cpu")
    start_from(child, loaded)
    parts = child.training_parts()
    first = parts.networks["D"].main[0]
    frozen = {
        name: p.detach().clone() for name, p in parts.networks["D"].named_parameters() if name.startswith("main.0.")
    }
    assert frozen and torch.equal(
        parts.networks["G"].state_dict()["main.0.weight"], base.netG.state_dict()["main.0.weight"]
    )
    child.train(blobs(16, seed=2), checkpoint_dir=tmp_path / "child-ckpt")
    d_after = dict(child.netD.named_parameters())
    for name, value in frozen.items():  # FreezeD: the first block kept the base's weights
        assert torch.equal(d_after[name], value), name
    later = [name for name in d_after if not name.startswith("main.0.")]
    assert any(not torch.equal(d_after[n], dict(base.netD.named_parameters())[n]) for n in later)
    assert any(
        not torch.equal(v, base.netG.state_dict()[k])
        for k, v in child.netG.state_dict().items()
        if v.is_floating_point()
    )
    assert first is parts.networks["D"].main[0]


def test_a_dcgan_base_saved_without_its_discriminator_gives_a_fresh_unfrozen_one(tmp_path):
    base = DCGAN(dcgan_config(total_steps=2, checkpoint_every=2), device="cpu")
    base.train(blobs(16), checkpoint_dir=tmp_path / "base-ckpt")
    base.save(tmp_path / "base")
    (tmp_path / "base" / "discriminator.safetensors").unlink()  # as generators trained before fine-tuning existed
    loaded = read_base(tmp_path / "base")
    config = build_config(
        DCGAN, resolution=32, channels=1, preset="quick", image_count=16, device="cpu", base=loaded.recipe_config()
    )
    assert config["freeze_d_blocks"] == 0
    child = DCGAN(config, device="cpu")
    assert set(start_from(child, loaded)) == {"G"}
    parts = child.training_parts()
    assert all(p.requires_grad for p in parts.networks["D"].parameters())
    assert torch.equal(parts.networks["G"].state_dict()["main.0.weight"], base.netG.state_dict()["main.0.weight"])


def test_freeze_d_is_refused_for_a_dcgan_trained_from_scratch_and_kept_when_fine_tuning(tmp_path):
    """FreezeD means "keep the base discriminator's first blocks": without a base it would silently do nothing."""
    with pytest.raises(ConfigError) as refused:
        build_config(
            DCGAN,
            resolution=32,
            channels=1,
            preset="quick",
            image_count=16,
            device="cpu",
            options={"freeze_d_blocks": 2},
        )
    assert "'freeze_d_blocks' applies only when fine-tuning" in refused.value.problems[0]
    base = DCGAN(dcgan_config(total_steps=2, checkpoint_every=2), device="cpu")
    base.train(blobs(16), checkpoint_dir=tmp_path / "base-ckpt")
    base.save(tmp_path / "base")
    config = build_config(
        DCGAN,
        resolution=32,
        channels=1,
        preset="quick",
        image_count=16,
        device="cpu",
        options={"freeze_d_blocks": 2},
        base=read_base(tmp_path / "base").recipe_config(),
    )
    assert config["freeze_d_blocks"] == 2
