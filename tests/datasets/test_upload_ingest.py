"""The upload service decodes on a pool of threads (issue #21): the same dataset as one file at a time,
in the same order, with the same rejections, and never more than a few files held at once."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.datasets import ingest as ingest_module
from apps.datasets import services
from tests.factories import png_bytes


def jpeg_bytes(seed: int) -> bytes:
    image = Image.open(io.BytesIO(png_bytes(seed, size=900))).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def uploads() -> tuple[list[SimpleUploadedFile], SimpleUploadedFile]:
    """Files (good JPEGs and PNGs, a text file, a duplicate) and a zip with a good, a bad and a refused member."""
    files = []
    for i in range(14):
        if i == 5:
            files.append(SimpleUploadedFile("notes.jpg", b"not an image at all\n" * 10, content_type="image/jpeg"))
        elif i == 9:
            files.append(SimpleUploadedFile("again.jpg", jpeg_bytes(2), content_type="image/jpeg"))  # = photo2.jpg
        elif i % 2:
            files.append(SimpleUploadedFile(f"photo{i}.png", png_bytes(i, size=300), content_type="image/png"))
        else:
            files.append(SimpleUploadedFile(f"photo{i}.jpg", jpeg_bytes(i), content_type="image/jpeg"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("zipped/a.png", png_bytes(100))
        archive.writestr("zipped/broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        archive.writestr("zipped/readme.txt", b"hello")
        archive.writestr("zipped/b.jpg", jpeg_bytes(101))
    return files, SimpleUploadedFile("more.zip", buffer.getvalue(), content_type="application/zip")


def ingest(user, settings, threads: int, name: str):
    settings.SYNTHGEN_INGEST_THREADS = threads
    files, archive = uploads()
    dataset, rejected = services.create_dataset(owner=user, name=name, files=files, archive=archive)
    images = [
        (image.original_name, image.width, image.height, image.mode, image.sha256, image.working.read())
        for image in dataset.images.order_by("pk")
    ]
    return images, rejected


@pytest.mark.django_db
def test_the_pool_stores_what_one_file_at_a_time_stores(user, settings):
    serial, serial_rejected = ingest(user, settings, 1, "serial")
    parallel, parallel_rejected = ingest(user, settings, 3, "parallel")
    assert [row[0] for row in parallel] == [row[0] for row in serial]  # the order the files came in
    assert parallel == serial  # same facts, same working PNG bytes
    assert parallel_rejected == serial_rejected
    assert [r["file"] for r in parallel_rejected] == [
        "notes.jpg",
        "again.jpg",
        "zipped/broken.png",
        "zipped/readme.txt",
    ]
    assert parallel_rejected[1]["reason"].startswith("duplicate")


@pytest.mark.django_db
def test_at_most_twice_the_threads_are_held_at_once(user, settings, monkeypatch):
    settings.SYNTHGEN_INGEST_THREADS = 2
    held, most = [0], [0]
    read, add = ingest_module._raw_bytes, ingest_module._add_one

    def counting_read(data, limits):
        held[0] += 1
        most[0] = max(most[0], held[0])
        return read(data, limits)

    def counting_add(*args, **kwargs):
        held[0] -= 1
        return add(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "_raw_bytes", counting_read)
    monkeypatch.setattr(ingest_module, "_add_one", counting_add)
    files = [SimpleUploadedFile(f"p{i}.png", png_bytes(i, size=64), content_type="image/png") for i in range(20)]
    dataset, rejected = services.create_dataset(owner=user, name="bounded", files=files)
    assert dataset.images.count() == 20 and rejected == []
    assert most[0] == 4  # 2 threads x 2: the files read or decoded and not yet stored


@pytest.mark.django_db
def test_a_storage_failure_part_way_keeps_nothing(user, settings, monkeypatch):
    settings.SYNTHGEN_INGEST_THREADS = 2
    add, calls = ingest_module._add_one, [0]

    def failing_add(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise services.StorageUnavailable("the storage is down")
        return add(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "_add_one", failing_add)
    files = [SimpleUploadedFile(f"p{i}.png", png_bytes(i), content_type="image/png") for i in range(10)]
    with pytest.raises(services.StorageUnavailable):
        services.create_dataset(owner=user, name="down", files=files)
    assert not services.Dataset.objects.filter(name="down").exists()
    assert not list((settings.MEDIA_ROOT).rglob("*.png"))
