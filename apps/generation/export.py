"""Writing generated images: a ready-to-train folder of PNGs, a manifest, and one zip."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from apps.core import storage
from apps.ml.engine.images import to_pil
from apps.ml.quality.balance import (  # the recipe; the report's balance test follows it
    GENERATED_PER_PHOTO,
    GENERATED_WEIGHT,
)

GALLERY_SIZE = 48  # images stored one by one for the job's page (the zip holds every image)


def write_pngs(images: torch.Tensor, folder: Path, start_index: int) -> list[str]:
    """Write uint8 [N,C,H,W] images as 000001.png ...; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for offset, image in enumerate(images):
        name = storage.job_image_name(start_index + offset + 1)
        to_pil(image).save(folder / name, format="PNG", compress_level=1)
        names.append(name)
    return names


def gallery_files(folder: Path) -> list[Path]:
    """The first GALLERY_SIZE PNGs of a job's local folder; with class folders, the first of each class in turn."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        return sorted(folder.glob("*.png"))[:GALLERY_SIZE]
    per_class = [sorted(c.glob("*.png")) for c in classes]
    picked = [files[i] for i in range(GALLERY_SIZE) for files in per_class if i < len(files)]
    return sorted(picked[:GALLERY_SIZE])


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / storage.JOB_MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    return path


def weight_note() -> dict[str, Any]:
    """What manifest.json says about metadata.jsonl's ``weight``."""
    return {
        "value": GENERATED_WEIGHT,
        "provisional": True,
        "per_photo": GENERATED_PER_PHOTO,
        "meaning": "recommended loss weight of each generated image (a real photo weighs 1)",
        "recipe": (
            f"weigh each generated image {GENERATED_WEIGHT:g}, add at most {GENERATED_PER_PHOTO} generated "
            "images per real photo of a class, and correct class imbalance (logit adjustment, "
            "class-balanced sampling) by your real photo counts, not counting generated images"
        ),
        "evidence": (
            "bench/longtail.py (Fashion-MNIST, 3 tails of 30 photos, 21,000 unseen test photos): with "
            "this recipe the generated images gave no measurable gain over the best real-only training; "
            "filling the tails to 500 with them cost 5 points. Check the generator's report and your "
            "own held-out photos before relying on them."
        ),
    }


def metadata_row(file_name: str, label: str, score: float | None) -> dict[str, Any]:
    """One line of metadata.jsonl: ``file_name`` relative to the folder that holds metadata.jsonl (the zip's
    dataset folder), the image's class name as ``label``, its class-filter ``score`` (None: not scored) and
    the recommended loss ``weight``."""
    return {"file_name": file_name, "label": label, "score": score, "weight": GENERATED_WEIGHT}


def write_metadata(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """metadata.jsonl, one JSON object per image: what Hugging Face ``datasets``' imagefolder loader reads
    (its ``file_name`` column); torchvision's ImageFolder skips it (not an image)."""
    path = folder / storage.JOB_METADATA
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_zip(folder: Path, zip_path: Path, arc_prefix: str) -> Path:
    """Zip every file of ``folder`` (class folders included) under ``arc_prefix/`` (PNGs are stored, not
    re-compressed). A conditional job's folder holds a folder per class: the zip is an ImageFolder."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, f"{arc_prefix}/{path.relative_to(folder).as_posix()}")
    tmp.replace(zip_path)
    return zip_path
