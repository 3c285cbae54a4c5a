"""The evaluate stage keeps the class's own photos out of its negatives, and samples like generation does."""

from types import SimpleNamespace

import pytest
import torch

from apps.core import storage
from apps.datasets import services as dataset_services
from apps.datasets.imaging import stack_training_tensor
from apps.generation import services as generation_services
from apps.generators import evaluation
from apps.generators.models import Generator
from apps.ml.engine import registry
from apps.ml.engine.checkpoint import save_tensors_atomic
from apps.ml.quality.heldout import holdout_count, split_heldout
from tests.factories import image_uploads

pytestmark = pytest.mark.django_db


def _photos(dataset, size=32):
    from PIL import Image

    pictures = []
    for image in dataset.images.all():
        with image.working.open("rb") as file, Image.open(file) as picture:
            picture.load()
            pictures.append(picture)
    return stack_training_tensor(pictures, size, 3)


def keys(images: torch.Tensor) -> set[bytes]:
    """Each image's bytes: equal keys, equal images."""
    return {bytes(x.numpy().tobytes()) for x in images}


def _ready_generator(owner, dataset, name, photos):
    """A registered generator whose reference images (its training photos) are on disk."""
    generator = Generator.objects.create(
        owner=owner,
        name=name,
        kind="dcgan",
        resolution=32,
        dataset=dataset,
        preset="quick",
        status=Generator.Status.READY,
        shared=True,
        files_dir=f"generators/{name}",
    )
    with storage.scratch("reference") as folder:
        save_tensors_atomic({"images": photos}, folder / "reference.safetensors")
        storage.publish_file(folder / "reference.safetensors", f"generators/{name}/reference.safetensors")
    return generator


def test_a_second_generator_on_the_same_dataset_never_uses_the_first_ones_photos(user, other_user):
    dataset = dataset_services.create_dataset(owner=user, name="ellipses", files=image_uploads(12))[0]
    photos = _photos(dataset)
    first = _ready_generator(user, dataset, "first", photos)
    second = Generator.objects.create(
        owner=user, name="second", kind="dcgan", resolution=32, dataset=dataset, preset="quick"
    )
    negatives, source = evaluation.negative_classes(second, photos)
    assert negatives == [] and source["classes"] == 0 and source["source"].startswith("none")
    # someone else's shared generator of another dataset is a fair negative class; the twin still is not
    others = dataset_services.create_dataset(owner=other_user, name="others", files=image_uploads(10, start=500))[0]
    third = _ready_generator(other_user, others, "third", _photos(others))
    negatives, source = evaluation.negative_classes(second, photos)
    assert source["source"] == "images of other generators in the registry"
    assert [len(n) for n in negatives] == [10] and source["dropped_as_duplicates"] == 0
    # the negatives are the third generator's photos, and none is a photo of the first (the class's own)
    assert keys(negatives[0]) == keys(_photos(others)) and not keys(negatives[0]) & keys(photos)
    assert first.files_dir != third.files_dir


def test_the_same_photos_uploaded_again_under_another_name_are_not_negatives(user):
    dataset = dataset_services.create_dataset(owner=user, name="ellipses", files=image_uploads(12))[0]
    twin = dataset_services.create_dataset(owner=user, name="ellipses again", files=image_uploads(12))[0]
    mixed = dataset_services.create_dataset(
        owner=user, name="half new", files=image_uploads(6) + image_uploads(6, start=300)
    )[0]
    generator = Generator.objects.create(
        owner=user, name="g", kind="dcgan", resolution=32, dataset=dataset, preset="quick"
    )
    negatives, source = evaluation.negative_classes(generator, _photos(dataset))
    assert source["dropped_as_duplicates"] == 12 + 6
    assert [len(n) for n in negatives] == [6]  # only the six new photos of "half new"
    assert keys(negatives[0]) == keys(_photos(mixed)) - keys(_photos(dataset)) == keys(_photos(mixed)[6:])
    assert keys(_photos(twin)) == keys(_photos(dataset))  # the twin's photos are the class's own
    assert source["source"] == "your other datasets"


def test_heldout_split_keeps_near_duplicate_shots_together():
    base = torch.randint(0, 256, (50, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    burst = (base[:10].int() + 2).clamp(0, 255).to(torch.uint8)  # 10 photos shot twice
    images = torch.cat([base, burst])
    for seed in range(4):
        train, held = split_heldout(images, seed=seed)
        assert len(train) + len(held) == 60 and 0 < len(held) <= holdout_count(60)
        for i in range(10):  # each pair of shots on one side
            pair = keys(images[[i, 50 + i]])
            assert pair <= keys(train) or pair <= keys(held)


@pytest.mark.parametrize("kind", ["dcgan", "ddim"])
def test_the_report_samples_with_the_steps_generation_uses_by_default(user, kind, monkeypatch, tmp_path):
    generator = Generator.objects.create(
        owner=user, name=kind, kind=kind, resolution=32, preset="quick", status=Generator.Status.READY
    )
    job = generation_services.start_generation(owner=user, generator=generator, count=4)  # steps left out
    asked = []

    class Recorder:
        def sample(self, n, *, seed, steps=None, **kwargs):
            asked.append(steps)
            return torch.zeros(n, 3, 32, 32, dtype=torch.uint8)

    real = registry.get(kind)
    monkeypatch.setattr(
        registry,
        "get",
        lambda k: SimpleNamespace(
            load=lambda folder, device: Recorder(),
            uses_sampling_steps=real.uses_sampling_steps,
            default_sampling_steps=real.default_sampling_steps,
        ),
    )
    monkeypatch.setattr(evaluation, "negative_classes", lambda g, photos: ([], {}))
    monkeypatch.setattr(evaluation, "quality_report", lambda **kwargs: {"sampling": kwargs["sampling"]})
    photos = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    report = evaluation.evaluate(
        generator=generator, model_dir=tmp_path, train=photos, heldout=None, copies_grid=tmp_path / "copies.png"
    )
    assert asked == [job.steps] and report["sampling"]["steps"] == job.steps
    if kind == "ddim":
        assert isinstance(job.steps, int) and job.steps > 0  # not None == None
