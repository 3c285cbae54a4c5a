"""schemathesis hooks for tests/system/test_api_contract.py (tests/system/schemathesis.toml loads them): files
are real images.

The schema can only say that `images` and `archive` are files ("binary"); the API keeps the files that are
images of at least 8 px a side, and a zip of them. schemathesis's own sample files (a 1x1 PNG, random bytes)
are none of that, so it could not make one upload the API accepts. Here every file it generates is one that
is both: a 16x16 PNG with a zip of two more PNGs appended (image readers stop at the PNG's end, zip readers
start from the archive's end); the zip holds two class folders, so a labelled upload of it is one too. What
makes a request valid or invalid for the schema (which fields, their types, how many files) stays exactly as
schemathesis generates it.
"""

from __future__ import annotations

import io
import zipfile

import schemathesis
from hypothesis import strategies as st
from PIL import Image


def _png(index: int) -> bytes:
    image = Image.new("RGB", (16, 16), ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_and_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # an ImageFolder of two classes: read labelled or not
        for index, label in ((1, "cat"), (2, "cat"), (3, "dog"), (4, "dog")):
            archive.writestr(f"photos/{label}/{index}.png", _png(index))
    return _png(0) + buffer.getvalue()


schemathesis.openapi.format("binary", st.just(_png_and_zip()))
