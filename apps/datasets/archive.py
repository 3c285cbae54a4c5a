"""Read the images out of an uploaded zip without trusting it.

Plain Python (no Django). ``iter_zip_images(fileobj, limits)`` checks the whole archive from its
central directory before reading a byte of member data, and raises ArchiveRejected when the
archive as a whole is unacceptable:

- not a zip at all;
- more entries than ``max_members`` (read from the end-of-central-directory record, before
  Python even parses the directory);
- declared uncompressed total over ``max_total_bytes``, one member over ``max_member_bytes``,
  or a member that inflates more than ``max_ratio`` times (a zip bomb).

The same caps are enforced again while members are read (actual bytes are counted, so sizes
that lie in the directory do not help), and ArchiveRejected can therefore also come out of the
iteration; callers treat that as a failed upload and discard what they stored from it.

Single bad members do not fail the archive; they are recorded in ``.rejected`` with a reason
and skipped: ``../`` or absolute paths, symbolic links and other non-regular files, encrypted
members, a zip (or other archive) inside the zip, and files whose extension is not an image
type. Directories, ``__MACOSX/``, dotfiles (``.DS_Store``, ``._photo.jpg``), ``Thumbs.db`` and
``desktop.ini`` are skipped silently. Whether a yielded member really is an image is
``imaging.decode_image``'s job.
"""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

MB = 1024 * 1024
GB = 1024 * MB
READ_CHUNK = 1 * MB

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
SILENTLY_SKIPPED = ("thumbs.db", "desktop.ini")
ZIP_MAGIC = b"PK\x03\x04"
EOCD_MAGIC = b"PK\x05\x06"
EOCD_SIZE = 22
MAX_ZIP_COMMENT = 65535


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps for one uploaded zip."""

    max_members: int = 2000  # central-directory entries, directories and skipped files included
    max_total_bytes: int = 4 * GB  # uncompressed bytes of all file entries together
    max_member_bytes: int = 30 * MB  # uncompressed bytes of one member (the image file cap)
    max_ratio: float = 100.0  # uncompressed / compressed size of one member
    ratio_min_bytes: int = 1 * MB  # members smaller than this are not ratio-checked
    image_extensions: tuple[str, ...] = IMAGE_EXTENSIONS


class ArchiveRejected(ValueError):
    """The whole archive is refused; ``reason`` is a message for the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MemberRejection:
    """One member that was not read, and why (shown to the user next to the upload)."""

    name: str
    reason: str


@dataclass
class ZipImages:
    """The image members of a checked zip; iterate for ``(member_name, bytes)``.

    ``rejected`` holds the members refused so far: those refused by name or attributes are
    there from the start, damaged ones are added while iterating.
    """

    archive: zipfile.ZipFile
    members: list[zipfile.ZipInfo]  # the members that will be read, in archive order
    limits: ArchiveLimits
    rejected: list[MemberRejection] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        total = 0
        for info in self.members:
            name = _clean_name(info.filename)
            try:
                data = _read_member(self.archive, info, self.limits)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as error:
                self.rejected.append(MemberRejection(name, f"damaged in the zip ({error}) - re-create the zip"))
                continue
            total += len(data)
            if total > self.limits.max_total_bytes:
                raise ArchiveRejected(
                    f"zip unpacks to more than {_size(self.limits.max_total_bytes)} - upload fewer images at once"
                )
            if data.startswith(ZIP_MAGIC):
                self.rejected.append(MemberRejection(name, _NESTED_ZIP))
                continue
            yield name, data


def iter_zip_images(fileobj: BinaryIO, limits: ArchiveLimits = ArchiveLimits()) -> ZipImages:
    """Check a seekable zip file object from its central directory; return its image members.

    Raises ArchiveRejected right away when the archive is not a zip or breaks a cap.
    """
    _check_entry_count(fileobj, limits)
    try:
        fileobj.seek(0)
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as error:
        raise ArchiveRejected(
            f"not a zip archive ({error}) - upload a .zip file made by your system's 'compress'"
        ) from None
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveRejected(_too_many(len(infos), limits))
    _check_sizes(infos, limits)

    members: list[zipfile.ZipInfo] = []
    rejected: list[MemberRejection] = []
    for info in infos:
        verdict = _member_verdict(info, limits)
        if verdict == "read":
            members.append(info)
        elif verdict != "skip":
            rejected.append(MemberRejection(_clean_name(info.filename), verdict))
    return ZipImages(archive=archive, members=members, limits=limits, rejected=rejected)


# --- whole-archive checks --------------------------------------------------------------------


def _check_entry_count(fileobj: BinaryIO, limits: ArchiveLimits) -> None:
    """Refuse too many entries from the end-of-central-directory record, before parsing it."""
    fileobj.seek(0, 2)
    size = fileobj.tell()
    tail_size = min(size, EOCD_SIZE + MAX_ZIP_COMMENT)
    fileobj.seek(size - tail_size)
    tail = fileobj.read(tail_size)
    position = tail.rfind(EOCD_MAGIC)
    if position < 0 or len(tail) - position < EOCD_SIZE:
        raise ArchiveRejected("not a zip archive - upload a .zip file made by your system's 'compress'")
    (entries,) = struct.unpack("<H", tail[position + 10 : position + 12])
    # 0xFFFF means "see the zip64 record": that many entries is over any sane cap already,
    # and when it is not, the count after parsing (in iter_zip_images) still applies.
    if entries > limits.max_members:
        raise ArchiveRejected(_too_many(entries, limits))


def _check_sizes(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    """Declared sizes: the total, each member, and each member's compression ratio."""
    files = [info for info in infos if not info.is_dir()]
    total = sum(info.file_size for info in files)
    if total > limits.max_total_bytes:
        raise ArchiveRejected(
            f"zip unpacks to {_size(total)}, over the {_size(limits.max_total_bytes)} limit - "
            "upload fewer images at once"
        )
    for info in files:
        name = _clean_name(info.filename)
        if info.file_size > limits.max_member_bytes:
            raise ArchiveRejected(
                f"{name} in the zip is {_size(info.file_size)}, over the "
                f"{_size(limits.max_member_bytes)} per-file limit - export it smaller"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= limits.ratio_min_bytes and ratio > limits.max_ratio:
            raise ArchiveRejected(
                f"zip bomb suspected: {name} inflates {ratio:.0f} times (limit {limits.max_ratio:.0f}) - "
                "images barely compress, so this zip is refused"
            )


# --- per-member checks -----------------------------------------------------------------------

_NESTED_ZIP = "zip inside a zip - unpack it and upload the images it holds"


def _member_verdict(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str:
    """'read', 'skip', or the reason the member is rejected."""
    raw = info.filename
    name = _clean_name(raw)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":") or "\x00" in raw:
        return "absolute path in the zip - refused for safety"
    if ".." in parts:
        return "path leaves the zip's folder ('../') - refused for safety"
    if info.is_dir() or not parts:
        return "skip"
    if parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts):
        return "skip"
    if parts[-1].lower() in SILENTLY_SKIPPED:
        return "skip"
    file_type = stat.S_IFMT(info.external_attr >> 16)  # Unix mode bits; 0 when the zip has none
    if file_type == stat.S_IFLNK:
        return "symbolic link - refused for safety; put the image itself in the zip"
    if file_type not in (0, stat.S_IFREG):
        return "not a regular file - refused"
    if info.flag_bits & 0x1:
        return "encrypted - zip it again without a password"
    extension = "." + parts[-1].rsplit(".", 1)[-1].lower() if "." in parts[-1] else ""
    if extension == ".zip":
        return _NESTED_ZIP
    if extension in ARCHIVE_EXTENSIONS:
        return f"archive inside a zip ({extension}) - unpack it and upload the images it holds"
    if extension not in limits.image_extensions:
        shown = extension or "no extension"
        return f"not an image file type ({shown}) - only {', '.join(limits.image_extensions)} are read"
    return "read"


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits) -> bytes:
    """A member's bytes, counted while inflating: never more than declared or than the cap."""
    cap = min(info.file_size, limits.max_member_bytes)
    chunks: list[bytes] = []
    read = 0
    with archive.open(info) as stream:
        while True:
            chunk = stream.read(READ_CHUNK)
            if not chunk:
                break
            read += len(chunk)
            if read > cap:
                raise ArchiveRejected(
                    f"{_clean_name(info.filename)} in the zip inflates past its declared size - zip refused"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def _clean_name(filename: str) -> str:
    return filename.replace("\\", "/")


def _too_many(entries: int, limits: ArchiveLimits) -> str:
    return f"zip has {entries} entries, over the {limits.max_members} limit - split it into smaller zips"


def _size(n_bytes: int) -> str:
    if n_bytes >= GB:
        return f"{n_bytes / GB:.1f} GB"
    return f"{n_bytes / MB:.1f} MB"
