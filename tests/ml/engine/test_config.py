"""Typed configs: built from a preset, changed only through checked settings, saved as JSON."""

import json

import pytest

from apps.ml.dcgan import DCGAN
from apps.ml.dcgan.config import DCGANConfig
from apps.ml.engine import registry
from apps.ml.engine.config import ConfigError, build_config, recipe_words, settings_of, share_of
from apps.ml.engine.device import device_class


def standard(**request) -> DCGANConfig:
    return DCGANConfig.from_preset(**{**dict(resolution=32, channels=1, preset="standard", image_count=150), **request})


def test_from_preset_is_what_default_config_returns():
    config = standard()
    assert config.to_dict() == DCGAN.default_config(resolution=32, channels=1, preset="standard", image_count=150)
    assert config.total_steps == config["total_steps"] == 5000 and config.kind == "dcgan"
    with pytest.raises(ValueError, match="resolution must be one of"):
        standard(resolution=48)
    with pytest.raises(ValueError, match="unknown preset"):
        standard(preset="forever")


def test_replace_checks_every_setting_and_names_the_known_ones():
    config = standard()
    changed = config.replace(total_steps=300, lr_g=1, diffaugment="color", ema_half_life_steps=20)
    assert (changed.total_steps, changed.lr_g, changed.diffaugment) == (300, 1.0, "color")
    assert isinstance(changed.lr_g, float) and config.total_steps == 5000  # a copy; the original is kept
    assert config.replace(total_steps=300.0).total_steps == 300 and isinstance(config.replace(nz=8.0).nz, int)
    with pytest.raises(ConfigError) as error:
        config.replace(total_steps=0, nope=1, lr_g="fast", ema=1, nz=2.5, channels=3, diffaugment="blur,color")
    problems = " ".join(error.value.problems)
    assert "'total_steps' must be between 1 and 1000000." in problems
    assert "'nope' is not a setting of dcgan; known: amp_bf16, batch_size, beta1" in problems
    assert "'lr_g' must be like 0.0002 (got 'fast')." in problems
    assert "'ema' must be like True (got 1)." in problems and "'nz' must be like 100 (got 2.5)." in problems
    assert "'channels' is not a setting" in problems  # fixed by the dataset, not an option
    assert "'diffaugment' is a comma-separated list of color, translation, cutout (got 'blur')." in problems
    assert len(error.value.problems) == 7 and isinstance(error.value, ValueError)


def test_json_round_trip_and_configs_saved_by_older_versions():
    config = standard().replace(total_steps=10)
    data = json.loads(json.dumps(config.to_dict()))
    assert DCGANConfig.from_dict(data) == config and DCGANConfig.from_dict(data).to_dict() == data
    older = {k: v for k, v in data.items() if k not in ("r1_every", "channels_last")}
    older["retired_setting"] = 3  # a key an older version wrote
    loaded = DCGANConfig.from_dict(older)
    assert loaded.r1_every == 4 and not loaded.channels_last  # missing settings take their defaults
    assert loaded["retired_setting"] == 3 and loaded.to_dict()["retired_setting"] == 3  # kept, not lost
    with pytest.raises(ValueError, match="config lacks"):
        DCGANConfig.from_dict({"resolution": 32})


def test_a_config_reads_and_writes_like_a_dict():
    config = standard()
    assert config.get("seed") == 0 and config.get("missing", 5) == 5 and "ngf" in config
    assert {**config} == config.to_dict() == dict(config)
    config["total_steps"] = 7
    assert config.total_steps == 7


def test_the_settings_the_api_lists_are_the_typed_fields_in_the_standard_preset():
    listed = settings_of(DCGAN)
    assert set(listed) == set(DCGANConfig.settings())
    assert not {"kind", "resolution", "channels", "preset", "image_count"} & set(listed)
    assert listed["total_steps"] == 5000 and listed["ngf"] == 32  # 64 px RGB, 500 images, CPU


def test_build_config_applies_overrides_then_options_and_says_where_a_problem_comes_from():
    request = dict(resolution=32, channels=1, preset="quick", image_count=150, device="cpu")
    config = build_config(DCGAN, **request, overrides={"total_steps": 10, "ngf": 4}, options={"total_steps": 20})
    assert config["total_steps"] == 20 and config["ngf"] == 4 and config["channels"] == 1
    with pytest.raises(ConfigError, match="SYNTHGEN_TRAINING_OVERRIDES: 'ngff' is not a setting"):
        build_config(DCGAN, **request, overrides={"ngff": 4})
    with pytest.raises(ConfigError, match="Advanced settings must be an object"):
        build_config(DCGAN, **request, options=[1])
    cuda = build_config(DCGAN, **{**request, "device": "cuda"}, options={"lr_g": 0.001})
    assert cuda["amp_bf16"] and cuda["lr_g"] == 0.001


def test_device_class_never_raises(monkeypatch):
    monkeypatch.setenv("SYNTHGEN_DEVICE", "cuda:1")
    assert device_class() == "cuda"
    monkeypatch.setenv("SYNTHGEN_DEVICE", "cpu")
    assert device_class() == "cpu"


def test_every_registered_type_lists_its_settings():
    for generator_type in registry.all_types().values():
        assert settings_of(generator_type)["total_steps"] > 0


def test_a_recipe_in_words_follows_its_numbers():
    """The types' fine_tuning sentences are built from their recipe constants, so a changed constant changes
    the words (no sentence left saying "half" after the rate went back to the preset's)."""
    assert share_of(1 / 3, "the steps") == "a third of the steps"
    assert share_of(0.5, "its learning rates") == "half its learning rates"
    assert share_of(1.0, "its learning rate") == "its learning rate"
    assert share_of(2, "its learning rate") == "twice its learning rate"
    assert share_of(0.4, "the steps") == "40 % of the steps"
    assert recipe_words(1 / 3, 1 / 5) == "a third of the preset's steps at a fifth of its learning rate"
