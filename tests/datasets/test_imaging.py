"""decode_image and the training-tensor helpers, on files built in memory (no Django)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from apps.datasets.imaging import (
    DecodedImage,
    ImageLimits,
    ImageRejected,
    dataset_channels,
    decode_image,
    png_bytes,
    stack_training_tensor,
    to_training_array,
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A colourful RGB image with a gradient and noise, so it is neither grey nor flat."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    array = np.stack([x + 0 * y, y + 0 * x, 255 - (x + y) / 2], axis=2)
    array += rng.normal(0, 8, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb by its size)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def rejected(data, name: str = "x.jpg", limits: ImageLimits | None = None) -> str:
    limits = limits or ImageLimits()
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, name, limits)
    return caught.value.reason


# --- good files ------------------------------------------------------------------------------


def test_jpeg_photo_is_decoded_and_downscaled_to_the_working_size():
    data = encode(photo(640, 480), "JPEG", quality=90)
    decoded = decode_image(data, "holiday.jpg")
    assert isinstance(decoded, DecodedImage)
    assert (decoded.width, decoded.height, decoded.format) == (640, 480, "JPEG")
    assert decoded.mode == "RGB"
    assert decoded.image.size == (341, 256)  # shorter side 256, aspect kept
    assert decoded.size_bytes == len(data)


def test_small_image_is_not_upscaled_and_grey_stays_grey():
    gray = Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28))
    decoded = decode_image(encode(gray, "PNG"), "sandal.png")
    assert decoded.image.size == (28, 28)
    assert decoded.mode == "L"
    assert np.array_equal(np.asarray(decoded.image), np.asarray(gray))


def test_rgb_with_equal_channels_becomes_l():
    gray = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    rgb = Image.fromarray(np.stack([gray] * 3, axis=2))
    assert decode_image(encode(rgb, "PNG"), "g.png").mode == "L"
    assert decode_image(encode(photo(30, 20), "PNG"), "c.png").mode == "RGB"


def test_file_object_and_content_not_extension_decide_the_format():
    data = encode(photo(32, 32), "PNG")
    decoded = decode_image(io.BytesIO(data), "really-a-png.jpg")
    assert decoded.format == "PNG"


def test_webp_and_single_frame_gif_are_accepted():
    assert decode_image(encode(photo(40, 30), "WEBP"), "a.webp").format == "WEBP"
    decoded = decode_image(encode(photo(40, 30).convert("P"), "GIF"), "a.gif")
    assert (decoded.format, decoded.mode) == ("GIF", "RGB")


def test_multi_picture_jpeg_uses_the_main_picture():
    red, blue = Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")
    buffer = io.BytesIO()
    red.save(buffer, "MPO", save_all=True, append_images=[blue])
    decoded = decode_image(buffer.getvalue(), "camera.jpg")
    assert decoded.format == "JPEG"
    r, g, b = decoded.image.getpixel((16, 16))
    assert r > 200 and g < 50 and b < 50


def test_large_jpeg_is_decoded_in_draft_mode(monkeypatch):
    decoded_sizes = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    decoded = decode_image(encode(photo(2048, 1536), "JPEG"), "big.jpg")
    assert decoded_sizes == [(512, 384)]  # 1536 // 256 = 6: libjpeg decodes at 1/4 scale
    assert decoded.image.size == (341, 256) and (decoded.width, decoded.height) == (2048, 1536)


def test_unreadable_exif_keeps_the_image_as_stored(monkeypatch):
    def broken(image, **kwargs):
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr("apps.datasets.imaging.ImageOps.exif_transpose", broken)
    monkeypatch.setattr(Image.Image, "getexif", lambda self: broken(self))
    source = photo(64, 32)
    decoded = decode_image(encode(source, "JPEG", quality=95), "odd.jpg")
    assert (decoded.width, decoded.height, decoded.mode) == (64, 32, "RGB")
    pixels = np.asarray(decoded.image).astype(int)  # a live image, not the closed file
    assert np.abs(pixels - np.asarray(source)).mean() < 8


def test_png_bytes_round_trip():
    decoded = decode_image(encode(photo(50, 40), "JPEG"), "a.jpg")
    again = Image.open(io.BytesIO(png_bytes(decoded.image)))
    assert again.format == "PNG"
    assert np.array_equal(np.asarray(again), np.asarray(decoded.image))


# --- accepted and normalised -----------------------------------------------------------------


def test_16_bit_grey_png_is_scaled_to_8_bit():
    wide = np.array([[0, 257 * 128, 65535, 1000]] * 8, dtype=np.uint16)
    source = Image.fromarray(wide)
    assert source.mode == "I;16"
    decoded = decode_image(encode(source, "PNG"), "scan16.png", ImageLimits(min_side=4))
    assert decoded.mode == "L"
    assert np.asarray(decoded.image)[0].tolist() == [0, 128, 255, 4]


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    decoded = decode_image(encode(cmyk, "JPEG", quality=95), "print.jpg")
    assert decoded.mode == "RGB"
    r, g, b = decoded.image.getpixel((16, 16))
    assert r > 240 and g < 15 and b < 15


def test_palette_png_with_transparency_is_composited_onto_white():
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    image.paste(1, (0, 0, 10, 20))  # left half red (index 1); right half index 0, transparent
    decoded = decode_image(encode(image, "PNG", transparency=0), "icon.png")
    assert decoded.mode == "RGB"
    assert decoded.image.getpixel((3, 10)) == (200, 30, 30)
    assert decoded.image.getpixel((16, 10)) == (255, 255, 255)  # not black


def test_grey_with_alpha_is_composited_onto_white_and_stays_grey():
    image = Image.new("LA", (20, 20), (40, 0))  # fully transparent dark grey
    image.paste((40, 255), (0, 0, 10, 20))  # left half opaque
    decoded = decode_image(encode(image, "PNG"), "mask.png")
    assert decoded.mode == "L"
    assert decoded.image.getpixel((3, 10)) == 40
    assert decoded.image.getpixel((16, 10)) == 255


def test_half_transparent_rgba_is_blended_with_white():
    image = Image.new("RGBA", (16, 16), (255, 0, 0, 128))
    r, g, b = decode_image(encode(image, "PNG"), "glass.png").image.getpixel((8, 8))
    assert r == 255 and 120 <= g <= 135 and 120 <= b <= 135


def exif_rotated_jpeg(width: int, height: int) -> bytes:
    """Stored landscape, dark left half / bright right half, EXIF 6 = display rotated 90° clockwise."""
    image = Image.new("L", (width, height), 250)
    image.paste(5, (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image.convert("RGB"), "JPEG", quality=95, exif=exif)


@pytest.mark.parametrize("stored, working", [((64, 32), (32, 64)), ((1200, 600), (256, 512))])
def test_exif_orientation_is_applied(stored, working):
    decoded = decode_image(exif_rotated_jpeg(*stored), "portrait.jpg")
    assert (decoded.width, decoded.height) == (stored[1], stored[0])  # as displayed
    assert decoded.image.size == working
    pixels = np.asarray(decoded.image)
    height = pixels.shape[0]
    assert pixels[: height // 2 - 2].mean() < 20  # the dark half is now on top
    assert pixels[height // 2 + 2 :].mean() > 230


# --- rejected, with a message that says what to do -------------------------------------------


def test_text_file_renamed_jpg():
    reason = rejected(b"Dear team,\nplease find the photos attached.\n", "x.jpg")
    assert reason.startswith("not an image: x.jpg looks like text")
    assert "PNG, JPEG or WebP" in reason


def test_text_starting_like_a_bmp_is_still_text_and_paths_are_cut_to_the_name():
    reason = rejected(b"BMW photos from the 2019 trip, see folder 3\n", "C:\\Users\\me\\cars.png")
    assert reason.startswith("not an image: cars.png looks like text")


def test_random_bytes_are_not_an_image():
    reason = rejected(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(), "blob.png")
    assert reason.startswith("not an image: blob.png")


def test_truncated_jpeg():
    data = encode(photo(200, 150), "JPEG", quality=90)
    reason = rejected(data[: len(data) // 2], "cut.jpg")
    assert reason.startswith("truncated JPEG: cut.jpg")


def test_damaged_png():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = bytearray(encode(Image.fromarray(noise), "PNG"))
    start = data.index(b"IDAT") + 20
    data[start : start + 200] = bytes(200)  # corrupt the compressed pixels
    assert rejected(bytes(data), "bad.png").startswith("damaged PNG: bad.png")


def test_empty_file():
    assert rejected(b"", "nothing.png").startswith("empty file: nothing.png")
    assert rejected(io.BytesIO(b""), "nothing.png").startswith("empty file")


def test_decompression_bomb_far_over_the_cap():
    reason = rejected(png_header_only(20000, 20000), "bomb.png")
    assert reason.startswith("too large: bomb.png has 400 MP, over the 50 MP limit")


def test_pixel_cap_names_the_size_and_is_configurable():
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's own cap, set by imaging, fires too
        reason = rejected(png_header_only(8000, 7000), "big.png")
    assert reason.startswith("too large: 8000x7000 px is over the 50 MP limit")
    small_cap = ImageLimits(max_pixels=1000)
    assert rejected(encode(photo(40, 40), "PNG"), "a.png", small_cap).startswith("too large: 40x40 px")


def test_file_over_the_size_limit_is_refused_before_decoding():
    data = encode(photo(100, 100), "PNG")
    limits = ImageLimits(max_file_bytes=len(data) - 1)
    assert rejected(data, "huge.png", limits).startswith("file over")
    stream = io.BytesIO(data + b"\x00" * 10_000)
    assert rejected(stream, "huge.png", limits).startswith("file over")
    assert stream.tell() == len(data)  # read no further than the cap + 1 byte


def test_too_small():
    assert rejected(encode(photo(4, 40), "PNG"), "dot.png").startswith("too small: dot.png is 4x40 px")


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_are_rejected(fmt):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:])
    assert rejected(buffer.getvalue(), "moving.gif").startswith(f"animated {fmt}: moving.gif has several frames")


def test_svg_is_rejected():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    assert rejected(svg, "logo.svg").startswith("SVG is not accepted: logo.svg")
    assert rejected(svg[22:], "logo.png").startswith("SVG is not accepted")


@pytest.mark.parametrize("fmt, kind", [("TIFF", "a TIFF image"), ("BMP", "a BMP image")])
def test_other_formats_are_rejected_by_name(fmt, kind):
    assert rejected(encode(photo(16, 16), fmt), "scan.img").startswith(f"{kind} is not accepted: scan.img")


# --- training tensors ------------------------------------------------------------------------


def three_stripes(width: int, height: int) -> Image.Image:
    """Red | green | blue vertical thirds: a centred square crop is all green."""
    image = Image.new("RGB", (width, height), (0, 200, 0))
    image.paste((200, 0, 0), (0, 0, width // 3, height))
    image.paste((0, 0, 200), (2 * width // 3, 0, width, height))
    return image


def test_to_training_array_resizes_the_shorter_side_and_centre_crops():
    array = to_training_array(three_stripes(96, 32), 16, 3)
    assert array.shape == (3, 16, 16) and array.dtype == np.uint8
    assert array[1].min() > 180 and array[0].max() < 25 and array[2].max() < 25  # Lanczos rings a little
    upscaled = to_training_array(Image.new("L", (8, 12), 77), 32, 1)
    assert upscaled.shape == (1, 32, 32) and (upscaled == 77).all()


def test_stack_training_tensor_and_channels():
    images = [three_stripes(48, 16), Image.new("L", (20, 20), 9)]
    channels = dataset_channels(image.mode for image in images)
    assert channels == 3
    batch = stack_training_tensor(images, 8, channels)
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == torch.uint8
    assert (batch[1] == 9).all()  # a grey image is repeated over three channels
    grey = stack_training_tensor([Image.new("L", (10, 10), 3)], 8, dataset_channels(["L"]))
    assert grey.shape == (1, 1, 8, 8)


def test_dataset_channels():
    assert dataset_channels(["L", "L"]) == 1
    assert dataset_channels(["L", "RGB"]) == 3
    with pytest.raises(ValueError):
        dataset_channels([])
