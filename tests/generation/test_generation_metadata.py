"""Images that count (#19): a conditional generator's jobs drop images of the wrong class, score every image, and
their zip carries metadata.jsonl that both torchvision's ImageFolder and Hugging Face's imagefolder read as it is."""

import io
import json
import zipfile

import numpy
import pytest
import torch
from torchvision.datasets import ImageFolder

from apps.core import storage
from apps.generation import export, loading, services
from apps.generation.models import GenerationJob
from apps.generators.models import Generator
from apps.ml.engine.checkpoint import save_tensors_atomic
from apps.ml.quality import class_filter as class_filter_module
from tests.ml.constructed import blobs, shapes

pytestmark = pytest.mark.django_db

CLASSES = ["blob", "shape"]
DRAW = {0: blobs, 1: shapes}


class OffClassModel:
    """A stand-in conditional generator: images of the asked class, but every third one of the other class."""

    def sample(self, n, *, seed, steps=None, labels=None, guidance=None):
        label = int(labels)
        right = DRAW[label](n, seed=seed % 100_000, size=32, channels=3)
        wrong = DRAW[1 - label](n, seed=seed % 100_000 + 1, size=32, channels=3)
        return torch.stack([wrong[i] if i % 3 == 2 else right[i] for i in range(n)])


def is_shape(image: torch.Tensor) -> bool:
    """shapes() images hold two grey levels (black and the frame's); blobs hold many."""
    return len(torch.unique(image)) <= 2


@pytest.fixture
def generator(user, settings, monkeypatch):
    settings.SYNTHGEN_QUALITY_CLASSIFIER_STEPS = 80  # the class filter's classifier (the report's recipe)
    generator = Generator.objects.create(
        owner=user,
        name="Shop shapes",
        kind="ddim",
        resolution=32,
        preset="quick",
        status=Generator.Status.READY,
        files_dir="generators/shop",
        classes=[{"name": c, "image_count": 42} for c in CLASSES],
    )
    labels = lambda n: torch.cat([torch.zeros(n), torch.ones(n)]).long()  # noqa: E731
    with storage.scratch("reference") as folder:
        for name, images, n in (
            ("reference", [blobs(30, seed=1, size=32, channels=3), shapes(30, seed=2, size=32, channels=3)], 30),
            ("heldout", [blobs(12, seed=3, size=32, channels=3), shapes(12, seed=4, size=32, channels=3)], 12),
        ):
            save_tensors_atomic({"images": torch.cat(images), "labels": labels(n)}, folder / f"{name}.safetensors")
            storage.publish_file(folder / f"{name}.safetensors", f"generators/shop/{name}.safetensors")
    monkeypatch.setattr(loading, "load_model", lambda *args: OffClassModel())
    loading._CLASS_FILTERS.clear()
    yield generator
    loading._CLASS_FILTERS.clear()


def run_job(generator, counts, tmp_path, filter_images=True):
    job = GenerationJob.objects.create(
        owner=generator.owner,
        generator=generator,
        count=sum(counts.values()),
        seed=7,
        counts=counts,
        filter_images=filter_images,
    )
    services.run_generation(job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.DONE, job.error
    out = tmp_path / f"job{job.pk}"
    with zipfile.ZipFile(io.BytesIO(storage.read_bytes(job.archive))) as archive:
        archive.extractall(out)
    (root,) = out.iterdir()
    return job, root


def test_off_class_images_are_dropped_and_every_image_is_listed_once_with_its_score(generator, tmp_path):
    job, root = run_job(generator, {"blob": 9, "shape": 6}, tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["filter"]["dropped"]["class"] >= 5  # every third image was of the other class
    assert job.dropped >= manifest["filter"]["dropped"]["class"]
    assert set(manifest["filter"]["class"]["classes"]) == set(CLASSES)
    assert manifest["weight"]["value"] == export.GENERATED_WEIGHT and manifest["weight"]["provisional"]
    assert (
        manifest["weight"]["per_photo"] == 4
        and "at most 4 generated images per real photo" in manifest["weight"]["recipe"]
    )
    # torchvision's ImageFolder reads the zip as it is (metadata.jsonl and manifest.json are not images) ...
    folder = ImageFolder(str(root))
    assert folder.classes == CLASSES and len(folder) == 15
    for path, label in folder.samples:
        picture = torch.from_numpy(numpy.array(folder.loader(path))).permute(2, 0, 1)
        assert is_shape(picture) == (CLASSES[label] == "shape"), path  # none of the wrong class was kept
    # ... and metadata.jsonl lists every image once, relative to its own folder, with class, score and weight
    rows = [json.loads(line) for line in (root / storage.JOB_METADATA).read_text().splitlines()]
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert sorted(row["file_name"] for row in rows) == files and len(rows) == 15
    scores = {image["file"]: image["score"] for image in manifest["images"]}
    thresholds = {c: v["threshold"] for c, v in manifest["filter"]["class"]["classes"].items()}
    for row in rows:
        assert row["label"] == row["file_name"].split("/")[0]
        assert row["score"] == scores[row["file_name"]] and row["score"] >= thresholds[row["label"]]
        assert row["weight"] == export.GENERATED_WEIGHT


def test_copies_are_looked_for_among_the_images_own_class_by_that_class_thresholds(generator, tmp_path):
    _, root = run_job(generator, {"blob": 4, "shape": 4}, tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    limits = manifest["filter"]["thresholds"]
    assert set(limits["by_class"]) == set(CLASSES) and {"noise", "blank"} <= set(limits)
    for name in CLASSES:  # 30 training + 12 held-out photos of each class calibrate its own limits
        assert limits["by_class"][name]["copy_calibration_images"] <= 42
        assert limits["by_class"][name]["copy_calibrated_on"] == "the class's own photos"
    for image in manifest["images"]:  # the reference photos are 30 blobs, then 30 shapes
        own = range(0, 30) if image["class"] == "blob" else range(30, 60)
        assert image["nearest_train"] in own, image


def test_the_class_filter_is_trained_once_per_generator_and_kept_in_its_folder(generator, tmp_path, monkeypatch):
    run_job(generator, {"blob": 3, "shape": 0}, tmp_path)
    assert storage.exists(f"generators/shop/{storage.GENERATOR_CLASS_FILTER}")
    loading._CLASS_FILTERS.clear()  # another worker process: it reads the stored filter

    def no_training(*args, **kwargs):
        raise AssertionError("the class filter was trained again")

    monkeypatch.setattr(loading, "train_class_filter", no_training)
    monkeypatch.setattr(class_filter_module, "train_class_filter", no_training)
    job, root = run_job(generator, {"blob": 0, "shape": 3}, tmp_path)
    rows = [json.loads(line) for line in (root / storage.JOB_METADATA).read_text().splitlines()]
    assert [row["label"] for row in rows] == ["shape"] * 3 and all(row["score"] is not None for row in rows)


def test_with_the_filter_off_images_are_kept_and_still_scored(generator, tmp_path):
    job, root = run_job(generator, {"blob": 6, "shape": 0}, tmp_path, filter_images=False)
    manifest = json.loads((root / "manifest.json").read_text())
    assert job.dropped == 0 and manifest["filter"]["dropped"]["class"] == 0
    rows = [json.loads(line) for line in (root / storage.JOB_METADATA).read_text().splitlines()]
    low = [row["score"] < manifest["filter"]["class"]["classes"]["blob"]["threshold"] for row in rows]
    assert low == [False, False, True] * 2  # the off-class images are kept, and their scores show it


def test_a_one_class_job_lists_its_images_under_the_zips_folder_name(tmp_path):
    images = blobs(4, seed=0, size=32, channels=3)
    folder = tmp_path / "images"
    names = export.write_pngs(images, folder, 0)
    export.write_metadata(folder, [export.metadata_row(name, "sandals", None) for name in names])
    zip_path = export.write_zip(folder, tmp_path / "zip" / "sandals-1.zip", arc_prefix="sandals")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "out")
        rows = [json.loads(line) for line in archive.read("sandals/metadata.jsonl").decode().splitlines()]
    assert [row["file_name"] for row in rows] == ["000001.png", "000002.png", "000003.png", "000004.png"]
    assert {row["label"] for row in rows} == {"sandals"} and all(row["score"] is None for row in rows)
    folder = ImageFolder(str(tmp_path / "out"))  # the zip's folder is the class
    assert folder.classes == ["sandals"] and len(folder) == 4


def test_hugging_face_imagefolder_reads_the_zip_as_it_is(tmp_path):
    """Runs where `datasets` is installed (it is no dependency of SynthGen: checked by hand with datasets 5.2.0)."""
    datasets = pytest.importorskip("datasets")
    folder, rows = tmp_path / "images", []
    for name, draw in (("ankle boot", blobs), ("sandal", shapes)):
        files = export.write_pngs(draw(3, seed=0, size=32, channels=3), folder / name, 0)
        rows += [export.metadata_row(f"{name}/{file}", name, 0.9) for file in files]
    export.write_manifest(folder, {"images": []})
    export.write_metadata(folder, rows)
    zip_path = export.write_zip(folder, tmp_path / "zip" / "shop-1.zip", arc_prefix="shop")
    loaded = datasets.load_dataset("imagefolder", data_files=str(zip_path), split="train")
    assert len(loaded) == 6 and sorted(loaded["label"]) == ["ankle boot"] * 3 + ["sandal"] * 3
    assert loaded["score"] == [0.9] * 6 and loaded["weight"] == [export.GENERATED_WEIGHT] * 6


def test_a_generator_that_never_draws_the_class_asked_for_says_so(generator, tmp_path, monkeypatch):
    class WrongClassModel(OffClassModel):
        def sample(self, n, *, seed, steps=None, labels=None, guidance=None):
            return DRAW[1 - int(labels)](n, seed=seed % 100_000, size=32, channels=3)

    monkeypatch.setattr(loading, "load_model", lambda *args: WrongClassModel())
    job, root = run_job(generator, {"blob": 2, "shape": 0}, tmp_path)
    assert job.produced == 0 and job.dropped >= 2
    assert "Only 0 of 2 images passed" in job.error and "not recognisable as their class" in job.error
    assert (root / storage.JOB_METADATA).read_text() == ""
