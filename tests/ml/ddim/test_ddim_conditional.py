"""Class-conditional DDIM (label embedding, label dropout, classifier-free guidance) and non-leaking
augmentation (tiny models, CPU). An unconditional config must stay exactly what it was."""

from __future__ import annotations

import json
import math

import pytest
import torch

from apps.ml.dcgan import DCGAN
from apps.ml.ddim import DDIM
from apps.ml.ddim.conditioning import guided
from apps.ml.ddim.config import AUGMENT_P, AUGMENT_P_LONGER, DEFAULT_GUIDANCE, DDIMConfig
from apps.ml.ddim.unet import UNet, build_unet
from apps.ml.engine import registry
from apps.ml.engine.augment import AUGMENT_DIM, conditioned_augment
from apps.ml.engine.config import ConfigError, build_config
from apps.ml.engine.training import LabelledImages
from tests.ml.ddim.tiny import ForwardSpy, perturb, tiny_config, tiny_images, weights

torch.set_num_threads(1)

CLASSES = ["sandal", "shirt", "bag"]


def conditional_config(**overrides) -> dict:
    return tiny_config(num_classes=3, classes=list(CLASSES), **overrides)


def tiny_labels(n: int = 16) -> torch.Tensor:
    return torch.arange(n) % 3


def tiny_unet(**kwargs) -> UNet:
    net = UNet(
        image_channels=1,
        resolution=8,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(4,),
        head_channels=8,
        groups=4,
        **kwargs,
    ).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():  # the zero-initialised output layers would hide every condition
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return net


# ---------------------------------------------------------------- unconditional: unchanged


def version_one_config(**changes) -> dict:
    """A config as saved before #18: U-Net version 1, no conditioned augmentation."""
    return tiny_config(augment_p=0.0, architecture_version=1, **changes)


def test_an_unconditional_config_builds_the_network_it_always_did():
    plain = UNet(
        image_channels=1,
        resolution=8,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(4,),
        head_channels=8,
        groups=4,
    )
    gen = DDIM(version_one_config(), device="cpu")
    keys = list(gen.model.state_dict())
    assert keys == list(plain.state_dict())
    assert not any("label" in key or "augment" in key for key in keys)
    assert gen.config.num_classes == 0 and gen.config.augment_p == 0 and gen.config.classes == []
    # Its resume check compares the same keys as before conditioning existed.
    assert gen.architecture() == {key: gen.config.get(key) for key in DDIM.architecture_keys}
    # A config saved before conditioning existed loads as unconditional, without augmentation.
    older = {
        k: v
        for k, v in version_one_config().items()
        if k
        not in (
            "num_classes",
            "classes",
            "label_dropout",
            "guidance_scale",
            "augment_p",
            "architecture_version",
            "augment_flip",
        )
    }
    loaded = DDIM(older, device="cpu")
    assert list(loaded.model.state_dict()) == keys and loaded.config.num_classes == 0
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), gen.model.state_dict().values()))


def test_the_conditioning_layers_are_the_only_new_weights_and_leave_the_others_initialised_alike():
    plain = DDIM(tiny_config(augment_p=0.0), device="cpu").model.state_dict()
    conditioned = DDIM(conditional_config(augment_p=0.2), device="cpu").model.state_dict()
    assert set(conditioned) - set(plain) == {"label_embed.weight", "augment_embed.weight"}
    assert conditioned["label_embed.weight"].shape == (3 + 1, 4 * 8)  # the classes and the "no label" token
    assert conditioned["augment_embed.weight"].shape == (4 * 8, AUGMENT_DIM)
    assert all(torch.equal(plain[key], conditioned[key]) for key in plain)


def test_an_unconditional_model_refuses_labels():
    gen = DDIM(tiny_config(), device="cpu")
    with pytest.raises(ValueError, match="unconditional"):
        gen.sample(2, seed=0, steps=2, labels=[0, 1])
    with pytest.raises(ValueError, match="unconditional"):
        gen.train(tiny_images(16), labels=tiny_labels(), checkpoint_dir="/nonexistent")
    with pytest.raises(ValueError, match="unconditional"):
        tiny_unet()(torch.zeros(1, 1, 8, 8), torch.zeros(1), torch.zeros(1, dtype=torch.long))


# ---------------------------------------------------------------- the conditional U-Net


def test_labels_change_the_output_and_no_label_is_the_null_token():
    net = tiny_unet(num_classes=3)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10.0, 400.0, 900.0])
    with torch.no_grad():
        outs = [net(x, t, torch.full((3,), label)) for label in range(3)]
        null = net(x, t, torch.full((3,), net.null_label))
        unlabelled = net(x, t)
    for a in range(3):
        assert not torch.allclose(outs[a], null)
        for b in range(a + 1, 3):
            assert not torch.allclose(outs[a], outs[b])
    assert net.null_label == 3 and torch.equal(unlabelled, null)


def test_label_dropout_trains_the_unconditional_branch_on_the_null_token():
    images, labels = tiny_images(16), tiny_labels()

    def training_labels(dropout: float) -> torch.Tensor:
        config = DDIMConfig.from_dict(conditional_config(label_dropout=dropout, batch_size=64))  # not range-checked
        gen = DDIM(config, device="cpu")
        parts = gen.training_parts()
        spy = ForwardSpy(gen.model)
        gen.training_step(parts, gen.training_data(images, labels), 0, torch.Generator().manual_seed(0))
        (call,) = spy.calls
        return call["labels"]

    kept = training_labels(0.0)
    assert kept.shape == (64,) and 0 <= int(kept.min()) and int(kept.max()) < 3  # the images' own labels
    assert (training_labels(1.0) == 3).all()  # every label dropped: the "no label" token
    some = training_labels(0.5)
    dropped = some == 3
    assert 10 < int(dropped.sum()) < 54
    assert torch.equal(some[~dropped], kept[~dropped])  # same batch; only the dropped labels differ


def test_guidance_combines_the_conditional_and_unconditional_predictions_in_one_call():
    gen = DDIM(conditional_config(cpu_sampling_bf16=False), device="cpu")  # float32 on any CPU: exact compares
    perturb(gen)
    net = gen.ema.model
    spy = ForwardSpy(net)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.full((4,), 500.0)
    labels = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        cond, uncond = net(x, t, labels), net(x, t)
    spy.calls.clear()
    denoise = gen._denoiser()
    with torch.no_grad():
        assert torch.equal(guided(denoise, labels, 1.0, no_label=3)(x, t), cond)  # guidance 1: the conditional model
        assert len(spy.calls) == 1 and spy.calls[0]["x"].shape[0] == 4
        assert torch.equal(guided(denoise, labels, 0.0, no_label=3)(x, t), uncond)
        spy.calls.clear()
        mixed = guided(denoise, labels, 3.0, no_label=3)(x, t)
    torch.testing.assert_close(mixed, uncond + 3.0 * (cond - uncond), rtol=1e-5, atol=1e-5)
    (call,) = spy.calls  # one forward of 2B: the labels, then the "no label" token
    assert call["x"].shape[0] == 8 and call["labels"].tolist() == [0, 1, 2, 0, 3, 3, 3, 3]


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp2m"])
def test_sampling_with_labels_has_the_shape_is_deterministic_and_follows_the_labels(sampler):
    gen = DDIM(conditional_config(), device="cpu")
    perturb(gen)
    labels = [0, 1, 2, 0, 1, 2]
    a = gen.sample(6, seed=3, steps=4, batch_size=4, labels=labels, sampler=sampler)
    assert a.dtype == torch.uint8 and a.shape == (6, 1, 8, 8)
    assert torch.equal(a, gen.sample(6, seed=3, steps=4, batch_size=4, labels=labels, sampler=sampler))
    assert not torch.equal(a, gen.sample(6, seed=4, steps=4, batch_size=4, labels=labels, sampler=sampler))
    # The labels of each batch go with its images: the first batch alone draws the same images.
    assert torch.equal(a[:4], gen.sample(4, seed=3, steps=4, batch_size=4, labels=labels[:4], sampler=sampler))
    # Names, one class for all, and a tensor are the same labels.
    names = gen.sample(6, seed=3, steps=4, batch_size=4, labels=[CLASSES[i] for i in labels], sampler=sampler)
    assert torch.equal(a, names)
    assert torch.equal(
        gen.sample(3, seed=3, steps=4, labels="shirt", sampler=sampler),
        gen.sample(3, seed=3, steps=4, labels=torch.tensor([1, 1, 1]), sampler=sampler),
    )
    # Other labels, other guidance, no labels: other images.
    assert not torch.equal(a, gen.sample(6, seed=3, steps=4, batch_size=4, labels=[1, 2, 0, 1, 2, 0], sampler=sampler))
    assert not torch.equal(
        a, gen.sample(6, seed=3, steps=4, batch_size=4, labels=labels, guidance=1.0, sampler=sampler)
    )
    assert gen.sample(2, seed=3, steps=4, sampler=sampler).shape == (2, 1, 8, 8)  # unconditional: "no label"


def test_the_default_guidance_comes_from_the_config():
    gen = DDIM(conditional_config(), device="cpu")
    perturb(gen)
    assert gen.config.guidance_scale == DEFAULT_GUIDANCE and 1.0 < DEFAULT_GUIDANCE <= 8.0
    default = gen.sample(3, seed=1, steps=3, labels=[0, 1, 2])
    assert torch.equal(default, gen.sample(3, seed=1, steps=3, labels=[0, 1, 2], guidance=DEFAULT_GUIDANCE))
    other = DDIM({**gen.config, "guidance_scale": 1.0}, device="cpu")
    other.ema.load_state_dict(gen.ema.state_dict())
    assert torch.equal(
        other.sample(3, seed=1, steps=3, labels=[0, 1, 2]),
        gen.sample(3, seed=1, steps=3, labels=[0, 1, 2], guidance=1.0),
    )


def test_bad_sampling_labels_are_refused():
    gen = DDIM(conditional_config(), device="cpu")
    with pytest.raises(ValueError, match="one label per image"):
        gen.sample(3, seed=0, steps=2, labels=[0, 1])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        gen.sample(2, seed=0, steps=2, labels=[0, 3])
    with pytest.raises(ValueError, match="unknown class 'boot'"):
        gen.sample(1, seed=0, steps=2, labels=["boot"])
    with pytest.raises(ValueError, match="guidance"):
        gen.sample(1, seed=0, steps=2, labels=[0], guidance=-1)


# ---------------------------------------------------------------- training, resume, files


def test_conditional_training_needs_labels_and_resumes_to_the_same_weights(tmp_path):
    """Through the shared trainer with label dropout and augmentation: stopped between two
    checkpoints and resumed in a fresh instance, it trains the weights of an uninterrupted run."""
    images, labels = tiny_images(16), tiny_labels()
    config = conditional_config(dropout=0.2, total_steps=8, checkpoint_every=4, report_every=2, augment_p=0.5)

    def run(name: str, stop_at: int | None = None) -> DDIM:
        gen = DDIM(config, device="cpu")
        gen.train(
            images,
            labels=labels,
            checkpoint_dir=tmp_path / name,
            should_stop=(lambda: gen.step >= stop_at) if stop_at else None,
        )
        return gen

    whole = run("whole")
    run("parts", stop_at=5)
    resumed = run("parts")
    assert whole.step == resumed.step == 8
    assert all(torch.equal(x, y) for x, y in zip(weights(whole), weights(resumed)))
    assert torch.equal(
        whole.sample(3, seed=0, steps=3, labels=[0, 1, 2]), resumed.sample(3, seed=0, steps=3, labels=[0, 1, 2])
    )
    assert (tmp_path / "whole" / "samples" / "step_000008.png").exists()  # the grid runs through the classes
    with pytest.raises(ValueError, match="train it with labels"):
        DDIM(config, device="cpu").train(images, checkpoint_dir=tmp_path / "unlabelled")
    # The classes and the augmentation are part of the architecture a checkpoint is resumed with.
    with pytest.raises(ValueError, match="another architecture"):
        DDIM(tiny_config(dropout=0.2, total_steps=12, augment_p=0.5), device="cpu").train(
            images, checkpoint_dir=tmp_path / "whole"
        )
    with pytest.raises(ValueError, match="another architecture"):
        DDIM({**config, "total_steps": 12, "augment_p": 0.0}, device="cpu").train(
            images, labels=labels, checkpoint_dir=tmp_path / "whole"
        )


def test_conditional_training_learns_the_labels(tmp_path):
    """Two classes, a dark and a bright image: the conditional prediction must tell them apart."""
    dark, bright = torch.full((8, 1, 8, 8), -0.8), torch.full((8, 1, 8, 8), 0.8)
    images, labels = torch.cat([dark, bright]), torch.tensor([0] * 8 + [1] * 8)
    config = tiny_config(
        num_classes=2,
        hflip=False,
        total_steps=80,
        warmup_steps=5,
        checkpoint_every=1000,
        report_every=1000,
        learning_rate=5e-3,
    )
    gen = DDIM(config, device="cpu")
    gen.train(images, labels=labels, checkpoint_dir=tmp_path)
    out = gen.sample(8, seed=0, steps=8, labels=[0] * 4 + [1] * 4, guidance=1.0).float()
    assert out[:4].mean() < 90 and out[4:].mean() > 165, out.mean(dim=(1, 2, 3))


def test_save_and_load_keep_the_classes(tmp_path):
    gen = DDIM(conditional_config(augment_p=0.3), device="cpu")
    perturb(gen)
    gen.save(tmp_path / "gen")
    saved = json.loads((tmp_path / "gen" / "config.json").read_text())
    assert saved["num_classes"] == 3 and saved["classes"] == CLASSES and saved["augment_p"] == 0.3
    loaded = registry.get("ddim").load(tmp_path / "gen")
    assert loaded.config.num_classes == 3 and loaded.config.classes == CLASSES
    assert torch.equal(
        gen.sample(3, seed=5, steps=3, labels=["bag", "shirt", "sandal"]),
        loaded.sample(3, seed=5, steps=3, labels=[2, 1, 0]),
    )


def test_configs_round_trip_the_classes_and_build_config_sets_them():
    config = DDIMConfig.from_dict(conditional_config())
    assert DDIMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    built = build_config(
        DDIM,
        resolution=32,
        channels=1,
        preset="quick",
        image_count=150,
        device="cpu",
        classes=CLASSES,
        options={"guidance_scale": 1.5, "augment_p": 0.2},
    )
    assert (built["num_classes"], built["classes"], built["guidance_scale"], built["augment_p"]) == (
        3,
        CLASSES,
        1.5,
        0.2,
    )
    plain = build_config(DDIM, resolution=32, channels=1, preset="quick", image_count=150, device="cpu")
    # New configs get the preset's non-leaking augmentation (#18); one saved without it stays without.
    assert plain["num_classes"] == 0 and plain["classes"] == [] and plain["augment_p"] == AUGMENT_P
    # The longer presets get stronger non-leaking augmentation: at 0.15 the standard preset copied 150 photos.
    for preset in ("standard", "long"):
        assert (
            build_config(DDIM, resolution=32, channels=1, preset=preset, image_count=150, device="cpu")["augment_p"]
            == AUGMENT_P_LONGER
            > AUGMENT_P
        )
    assert "num_classes" not in DDIMConfig.settings() and "classes" not in DDIMConfig.settings()  # the dataset's
    assert {"label_dropout", "guidance_scale", "augment_p"} <= set(DDIMConfig.settings())
    with pytest.raises(ConfigError, match="'num_classes' is not a setting"):
        config.replace(num_classes=4)
    with pytest.raises(ConfigError, match="unique"):
        build_config(DDIM, resolution=32, channels=1, preset="quick", image_count=150, device="cpu", classes=["a", "a"])
    with pytest.raises(ValueError, match="classes names 2 classes but num_classes is 3"):
        DDIM(tiny_config(num_classes=3, classes=["a", "b"]), device="cpu")


def test_dcgan_learns_no_classes():
    with pytest.raises(ConfigError, match="dcgan learns no classes"):
        build_config(DCGAN, resolution=32, channels=1, preset="quick", image_count=150, device="cpu", classes=CLASSES)
    config = DCGAN.default_config(resolution=32, channels=1, preset="quick", image_count=150)
    with pytest.raises(ValueError, match="DCGAN learns no classes"):
        DCGAN({**config, "num_classes": 3})
    with pytest.raises(ValueError, match="DCGAN learns no classes"):
        DCGAN(config).train(
            torch.zeros(4, 1, 32, 32), labels=torch.zeros(4, dtype=torch.long), checkpoint_dir="/nonexistent"
        )
    assert not DCGAN.supports_labels and DDIM.supports_labels


# ---------------------------------------------------------------- non-leaking augmentation


def _undo_is_original(original: torch.Tensor, augmented: torch.Tensor, vector: torch.Tensor) -> None:
    """Rebuild the augmented image from the original and its vector, the slow way."""
    flipped, cos_minus_one, sin, shift_x, shift_y = vector.tolist()
    _, h, w = original.shape
    image = original.flip(2) if flipped else original
    turns = round(math.atan2(sin, cos_minus_one + 1) / (math.pi / 2)) % 4
    image = image.rot90(turns, dims=(1, 2))
    dx, dy = round(shift_x * w), round(shift_y * h)

    def mirror(i: int, size: int) -> int:
        while i < 0 or i >= size:
            i = -i if i < 0 else 2 * (size - 1) - i
        return i

    expected = torch.stack(
        [torch.stack([image[:, mirror(r - dy, h), mirror(c - dx, w)] for c in range(w)], dim=1) for r in range(h)],
        dim=1,
    )
    torch.testing.assert_close(augmented, expected, rtol=0, atol=0)


def test_the_augmentation_vector_describes_exactly_what_was_done():
    x = torch.randn(64, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    out, vectors = conditioned_augment(x, 0.5, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and vectors.shape == (64, AUGMENT_DIM)
    for original, augmented, vector in zip(x, out, vectors):
        _undo_is_original(original, augmented, vector)
        if not vector.any():
            assert torch.equal(original, augmented)  # zeros: left as it was
    assert 10 < int(vectors.any(dim=1).sum()) < 64  # some images augmented, some not
    assert (vectors[:, 0] == 1).any() and (vectors[:, 2] != 0).any() and (vectors[:, 3] != 0).any()
    assert vectors[:, 3].abs().max() <= 1 / 8  # at most 1/8 of the side
    again, again_vectors = conditioned_augment(x, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and torch.equal(vectors, again_vectors)


def test_no_augmentation_is_the_identity_with_zero_vectors():
    x = torch.randn(4, 1, 8, 8)
    out, vectors = conditioned_augment(x, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, x) and torch.equal(vectors, torch.zeros(4, AUGMENT_DIM))


def test_training_conditions_on_the_augmentation_and_sampling_passes_zeros():
    images = tiny_images(16)
    gen = DDIM(tiny_config(augment_p=0.5, batch_size=32), device="cpu")
    parts = gen.training_parts()
    spy = ForwardSpy(gen.model)
    gen.training_step(parts, gen.training_data(images), 0, torch.Generator().manual_seed(0))
    (call,) = spy.calls
    vectors = call["augment"]
    assert vectors.shape == (32, AUGMENT_DIM) and vectors.any(dim=1).any() and not vectors.any(dim=1).all()
    # The vector reaches the output; a zero vector (or none) adds exactly nothing.
    net = tiny_unet(augment_dim=AUGMENT_DIM)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([100.0, 700.0])
    with torch.no_grad():
        plain = net(x, t)
        assert torch.equal(net(x, t, augment=torch.zeros(2, AUGMENT_DIM)), plain)
        assert not torch.allclose(net(x, t, augment=torch.tensor([[1.0, 0, 0, 0, 0]] * 2)), plain)
    # Sampling tells the network "not augmented" at every step.
    perturb(gen)
    sample_spy = ForwardSpy(gen.ema.model)
    gen.sample(2, seed=0, steps=3)
    assert len(sample_spy.calls) == 3
    assert all(c["augment"] is None or not c["augment"].any() for c in sample_spy.calls)
    # And no augmentation is drawn (nor any vector passed) when augment_p is 0.
    off = DDIM(tiny_config(augment_p=0.0), device="cpu")
    off_parts = off.training_parts()  # builds the network it trains
    off_spy = ForwardSpy(off.model)
    off.training_step(off_parts, off.training_data(images), 0, torch.Generator().manual_seed(0))
    assert off_spy.calls[0]["augment"] is None


def test_build_unet_adds_the_conditioning_layers_from_the_config():
    assert build_unet(tiny_config(augment_p=0.0)).augment_dim == 0
    assert build_unet(tiny_config(augment_p=0.1)).augment_dim == AUGMENT_DIM
    assert build_unet(conditional_config()).num_classes == 3


def test_labelled_images_are_what_a_conditional_ddim_trains_on():
    gen = DDIM(conditional_config(), device="cpu")
    data = gen.training_data((tiny_images(16) + 1) * 127.5 // 1, tiny_labels().tolist())
    assert isinstance(data, LabelledImages) and data.labels.dtype == torch.long and data.images.shape == (16, 1, 8, 8)


# ---------------------------------------------------------------- trained enough (#18)


def test_a_conditional_model_trains_as_long_as_its_shortest_class_needs():
    request = dict(resolution=32, channels=1, preset="quick", device="cpu")
    one_class = build_config(DDIM, **request, image_count=30)["total_steps"]
    # Heads of 500 and three tails of 30: each class gets the passes a one-class model of 30 photos gets.
    counts = [500] * 7 + [30] * 3
    built = build_config(
        DDIM, **request, image_count=sum(counts), classes=[f"c{i}" for i in range(10)], class_counts=counts
    )
    assert built["total_steps"] == one_class * 10 and built["class_balanced"] is True
    assert built["checkpoint_every"] == built["total_steps"] // 10
    # Not from the total count (which would cap it at 2x the preset's steps).
    assert built["total_steps"] > 2 * build_config(DDIM, **request, image_count=sum(counts))["total_steps"]
    # The user's options still win; without counts the preset's length stays.
    assert (
        build_config(
            DDIM,
            **request,
            image_count=sum(counts),
            classes=["a", "b"],
            class_counts=[400, 3550],
            options={"total_steps": 700},
        )["total_steps"]
        == 700
    )
    assert build_config(DDIM, **request, image_count=150, classes=["a", "b"])["total_steps"] == one_class


def test_class_balanced_batches_show_the_short_class_as_often_as_the_long_one():
    labels = torch.tensor([0] * 300 + [1] * 10)
    images = tiny_images(310)
    gen = DDIM(tiny_config(num_classes=2, classes=["big", "small"], class_balanced=True, batch_size=4000), device="cpu")
    gen.training_parts()
    data = gen.training_data(images, labels=labels)
    _, drawn = gen._batch(data, torch.Generator().manual_seed(0))
    share = float((drawn == 1).float().mean())
    assert 0.45 < share < 0.55  # uniform over photos would give 10 / 310 = 3 %
    unbalanced = DDIM(tiny_config(num_classes=2, classes=["big", "small"], batch_size=4000), device="cpu")
    unbalanced.training_parts()
    _, drawn = unbalanced._batch(unbalanced.training_data(images, labels=labels), torch.Generator().manual_seed(0))
    assert float((drawn == 1).float().mean()) < 0.1
    # The images drawn for the short class are its own ten photos, each of them.
    batch, drawn = gen._batch(data, torch.Generator().manual_seed(1))
    small = batch[drawn == 1].flatten(1)
    photos = images[300:].flatten(1)
    nearest = torch.cdist(small, photos).min(1)
    assert float(nearest.values.max()) < 0.02 and set(nearest.indices.tolist()) == set(range(10))
