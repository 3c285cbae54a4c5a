"""JPEG draft decoding (libjpeg's DCT scaling, then the exact resize) against a full decode of the same file.

The full decode is decode_image itself with draft mode switched off, so both go through the same
orientation, mode conversion and Lanczos resize; only the decode's scale differs. No Django.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, JpegImagePlugin

from apps.datasets import imaging
from apps.datasets.imaging import decode_image

# Mean absolute difference, in grey levels of 255, between the two working images. These pictures are
# harsher than photos (noise and thin lines everywhere): they measure 0.3 to 1.9; bench/ingest.py's
# photo-like 12 MP JPEGs measure 0.5.
TOLERANCE = 2.5


def phone_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Photo-like RGB: smooth colour falloff, hard-edged shapes, fine texture and sensor noise."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(30, 226, (2, 2, 3), dtype=np.uint8)
    image = Image.fromarray(corners).resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 20, width // 3)), int(rng.integers(height // 20, height // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h), fill=colour)
    for i in range(0, width, max(8, width // 60)):  # thin lines: detail the DCT scaling must not lose
        draw.line((i, 0, i + height // 3, height), fill=(20, 20, 20), width=2)
    noise = rng.normal(0, 6, (height, width, 3))
    array = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(array).filter(ImageFilter.SMOOTH)


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def full_decode(data: bytes, name: str) -> imaging.DecodedImage:
    """decode_image with draft mode off: every pixel decoded at full size, then the same resize."""
    original = JpegImagePlugin.JpegImageFile.draft
    JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None
    try:
        return decode_image(data, name)
    finally:
        JpegImagePlugin.JpegImageFile.draft = original


def decoded_size(data: bytes, monkeypatch) -> tuple[int, int]:
    """The size of the decoded picture that decode_image normalises (before its resize)."""
    sizes = []
    normalise = imaging._normalise
    monkeypatch.setattr(
        imaging, "_normalise", lambda image, limits: (sizes.append(image.size), normalise(image, limits))[1]
    )
    decode_image(data, "x.jpg")
    monkeypatch.setattr(imaging, "_normalise", normalise)
    return sizes[0]


def mean_abs_difference(a: Image.Image, b: Image.Image) -> float:
    assert a.mode == b.mode and a.size == b.size
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


# Scales: the smallest 1/2, 1/4 or 1/8 that keeps 1.25 x 256 = 320 px on the shorter side.
@pytest.mark.parametrize("size, scale", [((4000, 3000), 8), ((2600, 2560), 8), ((3264, 2448), 4), ((1600, 1200), 2)])
def test_draft_decoding_matches_the_full_decode(size, scale, monkeypatch):
    data = jpeg(phone_photo(*size))
    assert decoded_size(data, monkeypatch) == (size[0] // scale, size[1] // scale)  # draft mode did scale the decode
    draft, full = decode_image(data, "photo.jpg"), full_decode(data, "photo.jpg")
    assert (draft.width, draft.height) == (full.width, full.height) == size
    assert draft.image.size == full.image.size and min(draft.image.size) == 256
    assert mean_abs_difference(draft.image, full.image) < TOLERANCE


def test_draft_decoding_of_an_exif_rotated_photo_matches_the_full_decode(monkeypatch):
    exif = Image.Exif()
    exif[imaging.EXIF_ORIENTATION] = 6  # stored landscape, shown portrait (rotated 90° clockwise)
    data = jpeg(phone_photo(2400, 2048, seed=1), exif=exif)
    assert decoded_size(data, monkeypatch) == (600, 512)  # as stored: the orientation is applied after the decode
    draft, full = decode_image(data, "portrait.jpg"), full_decode(data, "portrait.jpg")
    assert (draft.width, draft.height) == (2048, 2400)  # as displayed
    assert draft.image.size == full.image.size == (256, 300)
    assert mean_abs_difference(draft.image, full.image) < TOLERANCE


def test_draft_decoding_of_a_cmyk_jpeg_matches_the_full_decode(monkeypatch):
    data = jpeg(phone_photo(2400, 2048, seed=2).convert("CMYK"))
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.mode == "CMYK"
    assert decoded_size(data, monkeypatch) == (600, 512)
    draft, full = decode_image(data, "print.jpg"), full_decode(data, "print.jpg")
    assert draft.mode == full.mode == "RGB"
    assert draft.image.size == full.image.size == (300, 256)
    assert mean_abs_difference(draft.image, full.image) < TOLERANCE


def test_draft_decoding_of_a_grey_jpeg_matches_the_full_decode():
    data = jpeg(phone_photo(2400, 2048, seed=3).convert("L"))
    draft, full = decode_image(data, "grey.jpg"), full_decode(data, "grey.jpg")
    assert draft.mode == full.mode == "L"
    assert mean_abs_difference(draft.image, full.image) < TOLERANCE


def test_a_jpeg_already_small_is_decoded_whole(monkeypatch):
    data = jpeg(phone_photo(700, 600))
    assert decoded_size(data, monkeypatch) == (700, 600)  # half of it would be under 320 px
    assert mean_abs_difference(decode_image(data, "x.jpg").image, full_decode(data, "x.jpg").image) == 0
