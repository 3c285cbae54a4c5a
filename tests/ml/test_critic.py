"""The realism critic: it learns what marks generated images, keeps the clean ones, and survives a save."""
import json

import pytest
import torch

from apps.generators.ml import filtering
from apps.generators.ml.critic import Critic, train_critic
from apps.generators.ml.usefulness import ClassifierSettings

from .constructed import blobs

FAST = ClassifierSettings(steps=120, batch_size=32, width=8, image_size=16)


def checkered(images: torch.Tensor) -> torch.Tensor:
    """The images with a faint one-pixel checkerboard, the mark transposed convolutions leave."""
    size = images.shape[-1]
    board = (torch.arange(size).view(-1, 1) + torch.arange(size).view(1, -1)) % 2
    return (images.int() + 40 * board).clamp(0, 255).to(torch.uint8)


def generator_output(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n 'generated' images, half clean and half marked, shuffled; and which ones are clean."""
    clean = torch.arange(n) % 2 == 0
    clean = clean[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    images = blobs(n, seed=seed)
    images[~clean] = checkered(images[~clean])
    return images, clean


@pytest.fixture(scope="module")
def critic():
    generated, _ = generator_output(80, seed=11)
    calibration, _ = generator_output(80, seed=12)
    return train_critic(blobs(60, seed=10), generated, calibration=calibration, keep_share=0.5, seed=0,
                        settings=FAST)


def test_the_threshold_keeps_the_asked_share_of_fresh_images(critic):
    fresh, _ = generator_output(200, seed=13)
    kept = (critic.realism(fresh) >= critic.threshold).float().mean().item()
    assert 0.35 <= kept <= 0.65


def test_it_keeps_the_clean_images_and_drops_the_marked_ones(critic):
    fresh, clean = generator_output(200, seed=14)
    realism = critic.realism(fresh)
    assert realism[clean].mean() > realism[~clean].mean() + 0.3
    kept = realism >= critic.threshold
    assert clean[kept].float().mean() >= 0.9  # nearly all kept images are clean ones


def test_a_saved_critic_scores_the_same(critic, tmp_path):
    critic.save(tmp_path)
    assert json.loads((tmp_path / "critic.json").read_text())["threshold"] == critic.threshold
    loaded = Critic.load(tmp_path)
    images, _ = generator_output(20, seed=15)
    assert torch.allclose(loaded.realism(images), critic.realism(images))
    assert loaded.threshold == critic.threshold and loaded.keep_share == 0.5
    assert Critic.load(tmp_path / "none") is None  # generators made before critics existed


def test_the_filter_drops_unrealistic_images_and_scores_every_image(critic):
    reference = filtering.build_reference(blobs(40, seed=1), blobs(20, seed=2), critic=critic)
    images, clean = generator_output(40, seed=16)
    result = filtering.score_images(images, reference)
    assert result.dropped["unrealistic"] >= 15
    assert [s["dropped"] == "unrealistic" for s in result.scores] == (~result.keep).tolist()
    assert clean[result.keep].all()
    assert all(isinstance(s["realism"], float) for s in result.scores)
    assert reference.thresholds()["realism"] == critic.threshold
    json.dumps(result.scores)
    without = filtering.score_images(images, filtering.build_reference(blobs(40, seed=1), blobs(20, seed=2)))
    assert without.dropped["unrealistic"] == 0 and without.scores[0]["realism"] is None


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="keep_share"):
        train_critic(blobs(4, seed=0), blobs(4, seed=1), calibration=blobs(4, seed=2), keep_share=0)
    with pytest.raises(ValueError, match="at least two"):
        train_critic(blobs(1, seed=0), blobs(4, seed=1), calibration=blobs(4, seed=2))


def test_generation_samples_more_until_the_count_is_met_with_clean_images(critic):
    reference = filtering.build_reference(blobs(40, seed=1), blobs(20, seed=2), critic=critic)
    made = {}

    def sample(n, seed):
        images, clean = generator_output(n, seed=100 + seed)
        made[seed] = (images, clean)
        return images

    batch = filtering.generate_filtered(sample, 20, reference, seed=0)
    assert len(batch.images) == 20 and batch.shortfall == 0
    assert batch.dropped["unrealistic"] > 0 and batch.generated >= 20 + batch.dropped["unrealistic"]
    kept_clean = [made[s["seed"]][1][s["index"]].item() for s in batch.scores]
    assert sum(kept_clean) >= 18
