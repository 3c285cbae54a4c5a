"""Fixtures shared by the Django-side tests: users, API clients, tiny models (plain helpers: tests/factories.py)."""

import pytest
import torch

from tests.factories import token_client

# The real-service fixtures (a Celery worker, its brokers, SeaweedFS) live beside their helpers.
pytest_plugins = ["tests.realworker", "tests.s3server"]

torch.set_num_threads(1)  # tiny models: extra threads only contend on a small shared CPU

# Tiny models so that a whole training run takes seconds on the CPU.
TINY_TRAINING = {
    "dcgan": {"total_steps": 6, "batch_size": 8, "ngf": 4, "ndf": 4, "checkpoint_every": 3, "report_every": 1},
    "ddim": {
        "total_steps": 6,
        "batch_size": 8,
        "base_channels": 8,
        "channel_mults": [1, 2],
        "num_res_blocks": 1,
        "attention_resolutions": [8],
        "head_channels": 8,
        "checkpoint_every": 3,
        "report_every": 1,
        "grid_images": 4,
        "grid_steps": 2,
        "sampling_steps": 2,
        "compile": False,
    },
}


@pytest.fixture(autouse=True)
def tiny_training(settings, tmp_path):
    settings.SYNTHGEN_TRAINING_OVERRIDES = TINY_TRAINING
    settings.SYNTHGEN_MIN_TRAINING_IMAGES = 4
    settings.SYNTHGEN_QUALITY_SAMPLES = 16
    settings.SYNTHGEN_QUALITY_SEEDS = [0]
    settings.SYNTHGEN_QUALITY_CLASSIFIER_STEPS = 10
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SYNTHGEN_WORK_DIR = tmp_path / "work"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-password-1")


@pytest.fixture
def api(user):
    return token_client(user)


@pytest.fixture
def other_api(other_user):
    return token_client(other_user)
