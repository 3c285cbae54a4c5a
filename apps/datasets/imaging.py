"""Decode, check and normalise one uploaded image; turn working images into training tensors.

Plain Python + Pillow + numpy (torch only inside ``stack_training_tensor``, so a web process
that validates uploads does not load it): nothing here imports Django, so the upload service,
the pipeline's prepare stage and ``bench/ingest.py`` all share it.

What is accepted (the rule users see in the tutorial):

- Formats: PNG, JPEG, WebP and GIF, recognised by their content, not by the file name. Pillow
  only ever runs those four decoders (``Image.open(formats=...)``). JPEGs that carry several
  pictures (MPO, as some cameras write) are accepted: the main picture is used.
- Animations are rejected: an animated GIF, WebP or PNG (APNG) gets a message asking for a still
  image, because silently picking one frame would put a frame the user never chose into the
  dataset. A GIF with a single frame is accepted like any other image.
- SVG, TIFF, BMP, HEIC, AVIF, PDF and everything else are rejected with a message that names
  what the file looks like and the formats to use instead.
- Limits (``ImageLimits``): file size (30 MB), pixel count (50 MP; also set as Pillow's
  ``Image.MAX_IMAGE_PIXELS`` safety net when this module is imported), and a minimum side.

What a decoded image becomes: fully decoded (``load()``, never just ``verify()``), EXIF
orientation applied, transparency composited onto white, 16-bit / CMYK / palette / grey+alpha
converted, an RGB image whose channels are (nearly) equal stored as 'L', and downscaled so its
shorter side is at most ``working_size`` px (never upscaled). JPEGs are decoded in draft mode
(libjpeg's DCT scaling by 1/2, 1/4 or 1/8, to the smallest scale still at least 1.25 x ``working_size``
on the shorter side), then resized exactly like any other image: a 12 MP photo decodes in about half
the time of a full decode, and its working image differs from the full decode's by 0.5 to 2 grey
levels on average (tests/datasets/test_imaging_draft.py). What is left of the time is libjpeg's entropy
decoding, which no scale avoids: the upload service decodes several files at once (Pillow releases
the GIL while decoding, resizing and compressing).
"""

from __future__ import annotations

import io
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

MB = 1024 * 1024
DEFAULT_MAX_PIXELS = 50_000_000
EXIF_ORIENTATION = 0x0112
DRAFT_MARGIN = 1.25  # a JPEG's reduced decode keeps at least this times the working size on its shorter side

# Pillow's own decompression-bomb check (warning above the cap, error above twice the cap).
# decode_image() checks ImageLimits.max_pixels itself; this is the process-wide safety net.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS


def cap_pillow_pixels(max_pixels: int) -> None:
    """Set Pillow's process-wide decompression-bomb cap (``Image.MAX_IMAGE_PIXELS``)."""
    Image.MAX_IMAGE_PIXELS = int(max_pixels)


@dataclass(frozen=True)
class ImageLimits:
    """What decode_image() accepts and how big the working image it returns is."""

    max_file_bytes: int = 30 * MB  # larger files are rejected before any decoding
    max_pixels: int = DEFAULT_MAX_PIXELS  # width x height cap (decompression bombs)
    min_side: int = 8  # images whose shorter side is below this are rejected
    working_size: int = 256  # shorter side of the returned working image, at most
    allowed_formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF")
    background: tuple[int, int, int] = (255, 255, 255)  # transparency is composited onto this
    gray_tolerance: int = 2  # an RGB image whose channels differ by at most this is stored as 'L'


class ImageRejected(ValueError):
    """The file is not an image we accept; ``reason`` is a message for the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class DecodedImage:
    """One accepted upload: the normalised working image and facts about the original."""

    image: Image.Image  # mode 'L' or 'RGB', shorter side <= working_size
    width: int  # original width in px, as displayed (after EXIF orientation)
    height: int  # original height in px, as displayed
    format: str  # 'PNG', 'JPEG', 'WEBP' or 'GIF' (MPO is reported as 'JPEG')
    size_bytes: int  # size of the uploaded file

    @property
    def mode(self) -> str:
        return self.image.mode


ACCEPTED_HINT = "upload PNG, JPEG or WebP"

# Magic numbers of files people upload by mistake, for messages that say what the file is.
_SIGNATURES: tuple[tuple[re.Pattern[bytes], str], ...] = tuple(
    (re.compile(pattern, re.DOTALL), kind)
    for pattern, kind in (
        (rb"\x89PNG\r\n\x1a\n", "PNG"),
        (rb"\xff\xd8\xff", "JPEG"),
        (rb"GIF8[79]a", "GIF"),
        (rb"RIFF.{4}WEBP", "WEBP"),
        (rb"PK\x03\x04", "a zip archive"),
        (rb"%PDF", "a PDF document"),
        (rb"II\*\x00|MM\x00\*", "a TIFF image"),
        (rb"BM.{4}\x00{4}", "a BMP image"),  # "BM", the file size, 4 reserved zero bytes
        (rb".{4}ftyp(heic|heix|mif1)", "a HEIC photo"),
        (rb".{4}ftypavif", "an AVIF image"),
        (rb"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
        (rb"8BPS", "a Photoshop document"),
    )
)


def decode_image(data_or_fileobj: bytes | BinaryIO, filename: str, limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Check and fully decode one upload; return its normalised working image.

    ``data_or_fileobj`` is the file's bytes or a binary file object (read from its current
    position, at most ``limits.max_file_bytes + 1`` bytes). Raises ImageRejected with a message
    for the user when the file is not an image we accept.
    """
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1] or "file"
    data = _read_bounded(data_or_fileobj, limits.max_file_bytes)
    if not data:
        raise ImageRejected(f"empty file: {name} has 0 bytes - upload the image file itself")
    if len(data) > limits.max_file_bytes:
        raise ImageRejected(
            f"file over {_mb(limits.max_file_bytes)}: {name} is larger - "
            f"export it smaller (images are resized to {limits.working_size} px anyway)"
        )

    image = _open(data, name, limits)
    try:
        fmt = "JPEG" if image.format == "MPO" else str(image.format)
        stored_size = image.size  # before draft mode shrinks it
        _check_size(*stored_size, name, limits)  # from the header, before any pixel is decoded
        if getattr(image, "is_animated", False) and fmt != "JPEG":
            raise ImageRejected(
                f"animated {fmt}: {name} has several frames - export the frame you want as a "
                f"still image ({ACCEPTED_HINT})"
            )
        image.seek(0)  # is_animated may have moved to frame 1; MPO: the main picture
        if fmt == "JPEG":
            # DCT scaling: decode at 1/2, 1/4 or 1/8 size, still >= DRAFT_MARGIN x working_size on the
            # short side, so that the exact resize after it still filters (a decode that lands right on
            # the working size would keep the DCT's box-like average: softer than a Lanczos resize).
            target = math.ceil(limits.working_size * DRAFT_MARGIN)
            image.draft(None, (target, target))
        _load(image, name, fmt)
        width, height = _displayed_size(image, stored_size)  # EXIF is read after load (PNG keeps it anywhere)
        working = _normalise(image, limits)
    finally:
        image.close()
    return DecodedImage(image=working, width=width, height=height, format=fmt, size_bytes=len(data))


# zlib for working PNGs: run-length matching only. On photos 2-3x faster than the default (level 6) and as small
# (noise leaves LZ77 little to find); a flat background still compresses (runs). Same pixels either way.
PNG_ZLIB = {"compress_level": 1, "compress_type": zlib.Z_RLE}


def png_bytes(image: Image.Image) -> bytes:
    """Encode a working image as PNG (what the upload service stores next to the original)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **PNG_ZLIB)
    return buffer.getvalue()


def dataset_channels(modes: Iterable[str]) -> int:
    """1 when every image of a dataset is greyscale ('L'), else 3."""
    modes = list(modes)
    if not modes:
        raise ValueError("a dataset without images has no channel count")
    return 1 if all(mode == "L" for mode in modes) else 3


def to_training_array(image: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """Resize the shorter side to ``resolution`` (Lanczos), centre-crop a square: uint8 [C,H,W]."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    image = image.convert("L" if channels == 1 else "RGB")
    square = ImageOps.fit(image, (resolution, resolution), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    array = np.asarray(square, dtype=np.uint8)
    if channels == 1:
        return array[np.newaxis, :, :].copy()
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def stack_training_tensor(images: Sequence[Image.Image], resolution: int, channels: int) -> torch.Tensor:
    """Working images -> one uint8 tensor [N, channels, resolution, resolution]."""
    import torch  # here, not at the top: the web process validates uploads without loading torch

    batch = torch.empty((len(images), channels, resolution, resolution), dtype=torch.uint8)
    for i, image in enumerate(images):
        batch[i] = torch.from_numpy(to_training_array(image, resolution, channels))
    return batch


# --- steps of decode_image -------------------------------------------------------------------


def _read_bounded(data_or_fileobj: bytes | BinaryIO, max_bytes: int) -> bytes:
    """The upload's bytes; a file object is read to at most max_bytes + 1 bytes."""
    if isinstance(data_or_fileobj, (bytes, bytearray, memoryview)):
        return bytes(data_or_fileobj)
    return data_or_fileobj.read(max_bytes + 1)


def _open(data: bytes, name: str, limits: ImageLimits) -> Image.Image:
    """Open (header only) with the allowed decoders; explain failures in user terms."""
    try:
        return Image.open(io.BytesIO(data), formats=list(limits.allowed_formats))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        match = re.search(r"\((\d+) pixels\)", str(error))
        pixels = f"{int(match.group(1)) / 1e6:.0f} MP" if match else "too many pixels"
        raise ImageRejected(
            f"too large: {name} has {pixels}, over the {limits.max_pixels / 1e6:.0f} MP limit - "
            f"scale it down below {limits.max_pixels / 1e6:.0f} megapixels"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageRejected(_unidentified_reason(data, name, limits)) from error


def _unidentified_reason(data: bytes, name: str, limits: ImageLimits) -> str:
    """Why Pillow could not open the file, in words that tell the user what to do."""
    head = data[:1024]
    text = head.lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return f"SVG is not accepted: {name} is a vector drawing - export it as PNG"
    for signature, kind in _SIGNATURES:
        if signature.match(head):
            if kind in limits.allowed_formats:
                return f"damaged {kind}: {name} could not be read - re-export or re-download it"
            return f"{kind} is not accepted: {name} - convert it and {ACCEPTED_HINT}"
    if _looks_like_text(head):
        return f"not an image: {name} looks like text - {ACCEPTED_HINT}"
    return f"not an image: {name} is not a format we read - {ACCEPTED_HINT}"


def _looks_like_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        decoded = head.decode("latin-1")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in decoded)
    return b"\x00" not in head and printable >= 0.95 * len(decoded)


def _displayed_size(image: Image.Image, stored_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) as the photo is shown, i.e. swapped when EXIF says it is rotated 90°."""
    width, height = stored_size
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: the pixels still count, the orientation is ignored
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_size(width: int, height: int, name: str, limits: ImageLimits) -> None:
    """Pixel cap and minimum side (both the same whichever way the image is rotated)."""
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"too large: {width}x{height} px is over the {limits.max_pixels / 1e6:.0f} MP limit - "
            f"scale {name} down below {limits.max_pixels / 1e6:.0f} megapixels"
        )
    if min(width, height) < limits.min_side:
        raise ImageRejected(
            f"too small: {name} is {width}x{height} px - images need at least {limits.min_side} px on each side"
        )


def _load(image: Image.Image, name: str, fmt: str) -> None:
    """Decode every pixel; damaged data becomes ImageRejected."""
    try:
        image.load()
    except OSError as error:
        if "truncated" in str(error):
            raise ImageRejected(
                f"truncated {fmt}: {name} ends before its image data does - the file was cut off "
                "while copying or downloading; upload a complete copy"
            ) from None
        raise ImageRejected(f"damaged {fmt}: {name} could not be decoded ({error}) - re-export it") from None
    except Exception as error:  # any decoder failure means the file is unusable, never a crash
        raise ImageRejected(f"damaged {fmt}: {name} could not be decoded ({error}) - re-export it") from None


def _normalise(image: Image.Image, limits: ImageLimits) -> Image.Image:
    """Orientation, mode ('L' or 'RGB', alpha on the background), then downscale."""
    try:
        image = ImageOps.exif_transpose(image)  # a new image, detached from the file
    except Exception:  # broken EXIF: keep the pixels as stored
        image = image.copy()
    image = _to_l_or_rgb(image, limits.background)
    image = _shrink(image, limits.working_size)
    if image.mode == "RGB" and _is_gray(image, limits.gray_tolerance):
        image = image.convert("L")
    return image


def _to_l_or_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any decoded mode -> 'L' or 'RGB'; transparency composited onto ``background``."""
    if image.mode.startswith("I"):  # 16-bit ('I;16', 'I;16B', ...) or 32-bit greyscale
        image = _wide_gray_to_l(image)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # the palette may hold transparency; compositing handles both
    elif "transparency" in image.info and image.mode in ("L", "RGB"):
        image = image.convert("LA" if image.mode == "L" else "RGBA")
    if image.mode in ("La", "RGBa"):
        image = image.convert("LA" if image.mode == "La" else "RGBA")
    if image.mode in ("LA", "RGBA"):
        return _composite(image, background)
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("L" if image.mode in ("1", "F") else "RGB")  # CMYK, YCbCr, LAB, ...


def _wide_gray_to_l(image: Image.Image) -> Image.Image:
    """16-bit (0..65535) greyscale -> 8-bit 'L', scaling rather than clipping."""
    array = np.asarray(image).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(array / 257.0), 0, 255).astype(np.uint8))


def _composite(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """'LA' or 'RGBA' -> 'L' or 'RGB' over a solid background."""
    if image.mode == "LA":
        gray = round(0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2])
        base = Image.new("L", image.size, gray)
        base.paste(image.getchannel("L"), mask=image.getchannel("A"))
    else:
        base = Image.new("RGB", image.size, background)
        base.paste(image.convert("RGB"), mask=image.getchannel("A"))
    return base


def _shrink(image: Image.Image, working_size: int) -> Image.Image:
    """Downscale so the shorter side is at most working_size (never upscale)."""
    width, height = image.size
    shorter = min(width, height)
    if shorter <= working_size:
        return image
    scale = working_size / shorter
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _is_gray(image: Image.Image, tolerance: int) -> bool:
    """Every pixel's channels within ``tolerance`` of each other (max - min = the largest pairwise difference)."""
    red, green, blue = image.split()
    return all(
        ImageChops.difference(a, b).getextrema()[1] <= tolerance for a, b in ((red, green), (green, blue), (red, blue))
    )


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / MB:.0f} MB"
