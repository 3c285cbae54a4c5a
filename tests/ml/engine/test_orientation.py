"""Faithful images (#18): which way the photos face, and every place that augments asks first."""

from __future__ import annotations

import torch

from apps.ml.ddim import DDIM
from apps.ml.ddim.config import DDIMConfig
from apps.ml.engine import orientation
from apps.ml.engine.augment import augment_dataset, conditioned_augment
from apps.ml.engine.config import build_config
from apps.ml.quality.classifier import _augment as classifier_augment
from tests.ml.constructed import discs, facing_other_way, wedges
from tests.ml.ddim.tiny import ForwardSpy, perturb, tiny_config, tiny_images

# ---------------------------------------------------------------- measuring


def test_one_way_photos_are_recorded_as_one_way():
    found = orientation.measure(wedges())
    assert found.mirrors is False and found.rotations is False
    assert found.mirror_share <= 0.15 and found.asymmetry > 1  # a few small wedges sit right of centre
    assert "face one way" in found.sentence() and "no mirror images" in found.sentence()


def test_symmetric_and_two_way_photos_keep_mirror_images():
    for images in (discs(), wedges(both_ways=True)):
        found = orientation.measure(images)
        assert found.mirrors is True, found
        assert found.asymmetry < orientation.SYMMETRIC
        assert "mirror images may be added" in found.sentence()
    assert orientation.measure(discs()).rotations is True  # a disc has no way up
    assert orientation.measure(wedges(both_ways=True)).rotations is False  # wedges lie flat: no quarter turns


def test_a_labelled_dataset_is_one_way_when_any_class_is_and_says_which():
    images = torch.cat([wedges(), discs()])
    labels = torch.tensor([0] * 40 + [1] * 40)
    found = orientation.measure(images, labels, ["wedge", "disc"])
    assert found.mirrors is False
    assert found.classes["wedge"]["mirrors"] is False and found.classes["disc"]["mirrors"] is True
    assert "wedge" in found.sentence() and "disc" not in found.sentence()
    assert orientation.Orientation.from_dict(found.as_dict()) == found


def test_too_few_photos_cannot_tell_and_take_the_safe_side():
    found = orientation.measure(discs(n=orientation.MIN_PHOTOS - 1))
    assert found.mirror_share is None and found.mirrors is False and found.rotations is False
    assert "Too few photos" in found.sentence()


# ---------------------------------------------------------------- every place that augments


def test_the_offline_stage_adds_no_mirror_image_of_one_way_photos():
    photos = wedges()
    own = facing_other_way(photos, photos)  # a few small wedges sit right of centre
    copies = augment_dataset(photos, copies=3, seed=0, mirror=False)[len(photos) :]
    assert facing_other_way(copies, photos) <= own + 0.05
    # With mirror images allowed, about half of the copies face the other way: the test can see it.
    assert facing_other_way(augment_dataset(photos, copies=3, seed=0)[len(photos) :], photos) > own + 0.25


def test_quarter_turns_only_when_asked_for():
    photos = wedges()
    upright = augment_dataset(photos, copies=2, seed=0, mirror=False)[len(photos) :]
    turned = augment_dataset(photos, copies=2, seed=0, mirror=False, quarter_turns=True)[len(photos) :]
    mean = photos.float().mean(0)

    def closer_to_turned(x):
        flat = x.float().flatten(1)
        to_turned = (flat - mean.rot90(1, dims=(1, 2)).flatten()).pow(2).sum(1)
        return float((to_turned < (flat - mean.flatten()).pow(2).sum(1)).float().mean())

    assert closer_to_turned(turned) > closer_to_turned(upright) + 0.1


def test_the_ddim_recipe_follows_the_photos():
    one_way = orientation.measure(wedges()).as_dict()
    symmetric = orientation.measure(discs()).as_dict()
    request = dict(resolution=32, channels=1, preset="quick", image_count=150, device="cpu")
    for_one_way = build_config(DDIM, **request, orientation=one_way)
    assert for_one_way["hflip"] is False and for_one_way["augment_flip"] is True and for_one_way["augment_p"] > 0
    for_symmetric = build_config(DDIM, **request, orientation=symmetric)
    assert for_symmetric["hflip"] is True and for_symmetric["augment_flip"] is False
    # The user's options still win over the recipe.
    assert build_config(DDIM, **request, orientation=one_way, options={"hflip": True})["hflip"] is True
    # Not measured (e.g. a config built without the photos): no plain flips either.
    assert build_config(DDIM, **request)["hflip"] is False


def test_one_way_photos_train_with_conditioned_flips_and_sample_with_the_flip_bit_off():
    config = DDIMConfig.from_dict(tiny_config(batch_size=64)).for_photos(orientation.measure(wedges()).as_dict())
    config = config.replace(augment_p=0.5)
    gen = DDIM(config.to_dict(), device="cpu")
    parts = gen.training_parts()
    spy = ForwardSpy(gen.model)
    images = tiny_images(16)
    gen.training_step(parts, gen.training_data(images), 0, torch.Generator().manual_seed(0))
    (call,) = spy.calls
    flipped = call["augment"][:, 0] == 1
    assert 0 < int(flipped.sum()) < 64  # some images were flipped, and the network was told which
    # Every image the network saw flipped was told so: batch rows equal a mirrored photo only with the bit set.
    photos = images.flatten(1)
    mirrored_unflagged = [
        (row.flatten() - photos.flip(-1)).abs().amax(1).min() < 1e-6 and not bit
        for row, bit, vec in zip(call["x"], flipped, call["augment"])
        if not vec[1:].any()
    ]
    assert not any(mirrored_unflagged)
    perturb(gen)
    sample_spy = ForwardSpy(gen.ema.model)
    gen.sample(2, seed=0, steps=3)
    assert sample_spy.calls and all(c["augment"] is None or not c["augment"].any() for c in sample_spy.calls)


def test_conditioned_augmentation_can_leave_flips_out():
    x = tiny_images(64)
    _, with_flips = conditioned_augment(x, 0.5, torch.Generator().manual_seed(0))
    _, without = conditioned_augment(x, 0.5, torch.Generator().manual_seed(0), flip=False)
    assert with_flips[:, 0].any() and not without[:, 0].any()
    assert torch.equal(with_flips[:, 1:], without[:, 1:])  # the other draws are the same


def test_the_usefulness_classifier_mirrors_only_when_told():
    x = wedges(n=64).float() / 127.5 - 1
    kept = classifier_augment(x, torch.Generator().manual_seed(0), mirror=False)
    flipped = classifier_augment(x, torch.Generator().manual_seed(0), mirror=True)
    own = facing_other_way(x, x)
    assert facing_other_way(kept, x) <= own + 0.05 and facing_other_way(flipped, x) > own + 0.25


# ---------------------------------------------------------------- the U-Net's version


def test_a_version_one_checkpoint_still_loads_and_samples_as_before(tmp_path):
    old = tiny_config(augment_p=0.0, architecture_version=1)
    saved = {k: v for k, v in old.items() if k not in ("architecture_version", "augment_flip")}  # as written then
    gen = DDIM(saved, device="cpu")
    perturb(gen)
    before = gen.sample(3, seed=4, steps=3)
    gen.save(tmp_path / "old")
    loaded = DDIM.load(tmp_path / "old")
    assert loaded.config.architecture_version == 1 and "architecture_version" not in loaded.architecture()
    assert torch.equal(loaded.sample(3, seed=4, steps=3), before)
    # The same weights in a version-2 network compute something else (the SiLU is really there).
    newer = DDIM({**saved, "architecture_version": 2}, device="cpu")
    newer.ema.model.load_state_dict(loaded.ema.model.state_dict())
    assert not torch.equal(newer.sample(3, seed=4, steps=3), before)
    assert newer.architecture()["architecture_version"] == 2  # a resume never mixes the two


def test_new_configs_build_version_two():
    assert DDIM.default_config(resolution=32, channels=3, preset="quick", image_count=150)["architecture_version"] == 2
