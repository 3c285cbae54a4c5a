"""Class labels of a labelled upload (an ImageFolder zip, or files sent with a label each). Plain Python.

In a zip, a member's class is the first folder of its path. A zip made by compressing the dataset's own
folder wraps every class in one more folder (``flowers/tulip/1.jpg``): when every member sits at least
two folders deep under the same first folder, that folder is the root and is dropped.
"""

from __future__ import annotations

import unicodedata

MAX_CLASS_NAME = 64
MIN_CLASS_IMAGES = 2
MIN_CLASSES = 2


def _folders(member_name: str) -> list[str]:
    return [part for part in member_name.replace("\\", "/").split("/")[:-1] if part not in ("", ".")]


def common_root(member_names: list[str]) -> str | None:
    """The one folder that wraps every class folder, if the zip has one."""
    folders = [_folders(name) for name in member_names]
    if not folders or any(len(f) < 2 for f in folders):
        return None
    firsts = {f[0] for f in folders}
    return firsts.pop() if len(firsts) == 1 else None


def class_of(member_name: str, root: str | None) -> str | None:
    """The member's class name (NFC-normalised, surrounding spaces removed), or None when it sits in no folder."""
    folders = _folders(member_name)
    if root is not None and folders and folders[0] == root:
        folders = folders[1:]
    if not folders:
        return None
    return clean(folders[0])


def clean(name: str) -> str:
    """A class name as stored: NFC (zips made on macOS spell accents apart), without surrounding spaces."""
    return unicodedata.normalize("NFC", name).strip()


def name_problem(name: str | None) -> str | None:
    """Why a class name cannot be used (None when it can), worded for the user."""
    if name is None:
        return "not inside a class folder - put every image in a folder named after its class"
    if not name:
        return "the class folder has no name - name each folder after its class"
    if name in (".", ".."):
        return f"'{name}' is not a class name - name each folder after its class"
    if len(name) > MAX_CLASS_NAME:
        return f"class name '{name[:20]}...' is {len(name)} characters, over {MAX_CLASS_NAME} - shorten the folder name"
    if "/" in name or "\\" in name:
        return f"class name '{name}' holds a slash - name the class without '/' or '\\'"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return "the class name holds control characters - rename the folder"
    return None


def folder_classes(member_names: list[str]) -> dict[str, int]:
    """The classes a zip's folders propose, with their image counts: ``{}`` unless every image sits in a
    usable class folder (after dropping one wrapping folder, as :func:`common_root`) and there are at least
    :data:`MIN_CLASSES` of them. Used to notice a labelled zip uploaded as one class."""
    root = common_root(member_names)
    counts: dict[str, int] = {}
    for name in member_names:
        label = class_of(name, root)
        if name_problem(label) is not None:
            return {}
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items())) if len(counts) >= MIN_CLASSES else {}
