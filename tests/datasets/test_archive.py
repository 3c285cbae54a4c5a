"""iter_zip_images on zips built in memory: safe members are read, unsafe ones refused (no Django)."""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile

import pytest
from PIL import Image

from apps.datasets.archive import ArchiveLimits, ArchiveRejected, iter_zip_images
from apps.datasets.imaging import decode_image

MB = 1024 * 1024


def png(colour: str = "red", size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> io.BytesIO:
    """A zip in memory; an entry is (name or ZipInfo, data)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for entry, data in entries:
            if isinstance(entry, zipfile.ZipInfo):
                entry.compress_type = method
            archive.writestr(entry, data)
    buffer.seek(0)
    return buffer


def read_all(fileobj, limits: ArchiveLimits | None = None):
    limits = limits or ArchiveLimits()
    images = iter_zip_images(fileobj, limits)
    members = list(images)
    return [name for name, _ in members], {r.name: r.reason for r in images.rejected}, members


def test_images_are_read_and_junk_is_skipped_silently():
    names, rejected, members = read_all(
        make_zip(
            [
                ("shoes/", b""),
                ("shoes/a.png", png("red")),
                ("shoes/B.JPG", png("blue")),  # extension case does not matter
                ("__MACOSX/shoes/._a.png", b"\x00\x05\x16\x07"),
                ("shoes/.DS_Store", b"junk"),
                ("shoes/Thumbs.db", b"junk"),
            ]
        )
    )
    assert names == ["shoes/a.png", "shoes/B.JPG"]
    assert rejected == {}
    decoded = decode_image(members[0][1], members[0][0])
    assert decoded.image.getpixel((0, 0)) == (255, 0, 0)


def test_parent_paths_are_refused_and_the_rest_is_read():
    names, rejected, _ = read_all(
        make_zip([("../../etc/evil.png", png()), ("ok/../../x.png", png()), ("good.png", png())])
    )
    assert names == ["good.png"]
    assert set(rejected) == {"../../etc/evil.png", "ok/../../x.png"}
    assert all("'../'" in reason for reason in rejected.values())


def test_absolute_paths_are_refused():
    names, rejected, _ = read_all(
        make_zip(
            [(zipfile.ZipInfo("/tmp/abs.png"), png()), (zipfile.ZipInfo("C:/abs.png"), png()), ("good.png", png())]
        )
    )
    assert names == ["good.png"]
    assert rejected["/tmp/abs.png"].startswith("absolute path")
    assert rejected["C:/abs.png"].startswith("absolute path")


def test_symlinks_are_refused():
    link = zipfile.ZipInfo("link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    names, rejected, _ = read_all(make_zip([(link, b"/etc/passwd"), ("good.png", png())]))
    assert names == ["good.png"]
    assert rejected["link.png"].startswith("symbolic link")


def test_zip_inside_a_zip_is_refused_by_extension_and_by_content():
    inner = make_zip([("a.png", png())]).getvalue()
    names, rejected, _ = read_all(
        make_zip([("inner.zip", inner), ("disguised.png", inner), ("b.tar.gz", b"x"), ("good.png", png())])
    )
    assert names == ["good.png"]
    assert rejected["inner.zip"].startswith("zip inside a zip")
    assert rejected["disguised.png"].startswith("zip inside a zip")
    assert rejected["b.tar.gz"].startswith("archive inside a zip (.gz)")


def directory_entry(buffer: bytes, name: str) -> int:
    """Offset of the central-directory entry of member ``name``."""
    position = buffer.index(b"PK\x01\x02")
    while True:
        (name_length,) = struct.unpack("<H", buffer[position + 28 : position + 30])
        if buffer[position + 46 : position + 46 + name_length] == name.encode():
            return position
        position = buffer.index(b"PK\x01\x02", position + 46)


def test_non_image_and_encrypted_members_are_refused():
    buffer = make_zip(
        [("notes.txt", b"hello"), ("README", b"hi"), ("secret.png", png()), ("good.png", png())]
    ).getvalue()
    patched = bytearray(buffer)
    patched[directory_entry(buffer, "secret.png") + 8] |= 0x1  # general-purpose flag: encrypted
    names, rejected, _ = read_all(io.BytesIO(bytes(patched)))
    assert names == ["good.png"]
    assert rejected["notes.txt"].startswith("not an image file type (.txt)")
    assert rejected["README"].startswith("not an image file type (no extension)")
    assert rejected["secret.png"].startswith("encrypted")


def test_zip_bomb_is_refused_from_the_directory_before_reading():
    bomb = make_zip([("big.png", bytes(8 * MB)), ("good.png", png())])
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(ArchiveRejected, match="zip bomb suspected: big.png inflates"):
        iter_zip_images(bomb, ArchiveLimits(max_member_bytes=64 * MB))


def test_member_and_total_size_caps():
    with pytest.raises(ArchiveRejected, match="over the 30.0 MB per-file limit"):
        iter_zip_images(make_zip([("huge.png", bytes(31 * MB))]))
    parts = [(f"p{i}.png", os.urandom(400_000)) for i in range(3)]
    with pytest.raises(ArchiveRejected, match="zip unpacks to 1.1 MB, over the 1.0 MB limit"):
        iter_zip_images(make_zip(parts), ArchiveLimits(max_total_bytes=1 * MB))


def test_member_count_cap_is_read_from_the_end_record():
    entries = [(f"{i}.png", b"") for i in range(6)]
    with pytest.raises(ArchiveRejected, match="zip has 6 entries, over the 5 limit"):
        iter_zip_images(make_zip(entries), ArchiveLimits(max_members=5))


def test_member_count_is_checked_before_the_directory_is_parsed():
    """The end record claims 65535 entries (as a zip with millions would): refused without parsing."""
    buffer = bytearray(make_zip([("a.png", png()), ("b.png", png())]).getvalue())
    end = buffer.rindex(b"PK\x05\x06")
    buffer[end + 10 : end + 12] = struct.pack("<H", 0xFFFF)
    with pytest.raises(ArchiveRejected, match="zip has 65535 entries, over the 2000 limit"):
        iter_zip_images(io.BytesIO(bytes(buffer)))


def test_sizes_that_lie_are_caught_while_reading():
    """The directory claims 1000 bytes, the data inflates to 200 kB: never more than 1000 come out."""
    buffer = make_zip([("liar.png", os.urandom(200_000)), ("good.png", png())]).getvalue()
    directory = directory_entry(buffer, "liar.png")
    patched = bytearray(buffer)
    patched[directory + 24 : directory + 28] = struct.pack("<I", 1000)  # its uncompressed size
    names, rejected, _ = read_all(io.BytesIO(bytes(patched)))
    assert names == ["good.png"]
    assert rejected["liar.png"].startswith("damaged in the zip")


@pytest.mark.parametrize("data", [b"", b"this is plain text, not a zip", png()])
def test_not_a_zip(data):
    with pytest.raises(ArchiveRejected, match="not a zip archive"):
        iter_zip_images(io.BytesIO(data))


def test_stored_members_work_too():
    names, rejected, members = read_all(make_zip([("a.webp", png()), ("b.gif", png())], method=zipfile.ZIP_STORED))
    assert names == ["a.webp", "b.gif"] and rejected == {}
    assert members[1][1] == png()
