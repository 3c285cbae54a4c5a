"""Export a generator as one file and import such a file as a ready generator (the format: apps.ml.engine.portable).

Anyone who can see a ready generator (their own, or a shared one) can export it, as they can generate from it.
An imported generator belongs to the importing user, is private until they share it, keeps its lineage's name
("fine-tuned from ...") and its quality report, and has no training photos here: its jobs generate without the
copy and class filters (their manifests say ``filtered: false``).
"""

from __future__ import annotations

import json
import tempfile

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from apps.core import storage
from apps.core.errors import InvalidInput
from apps.ml.engine.portable import EXTRA_FILES, MODEL_FILES, REQUIRED, PackageError, read_package, write_package
from apps.ml.engine.transfer import CONFIG_FILE

from .models import Generator
from .presentation import readable_report
from .services import generator_files_dir


def export_filename(generator: Generator) -> str:
    return f"{slugify(generator.name) or 'generator'}-{generator.pk}.synthgen.zip"


def export_generator(*, generator: Generator):
    """The export of a ready ``generator`` as a temporary file (read from the start), for a download."""
    if not generator.is_ready:
        raise InvalidInput(
            {"generator": f"Generator {generator.pk} is {generator.status_words}: only a ready one can be exported."}
        )
    out = tempfile.TemporaryFile()
    with storage.scratch(f"export{generator.pk}") as folder:
        for name in MODEL_FILES:
            source = storage.in_folder(generator.files_dir, name)
            if storage.exists(source):
                storage.fetch_file(source, folder / name)
        extras = {
            name: storage.read_bytes(storage.in_folder(generator.files_dir, name))
            for name in EXTRA_FILES
            if storage.exists(storage.in_folder(generator.files_dir, name))
        }
        missing = [name for name in REQUIRED if not (folder / name).exists()]
        if missing:
            out.close()
            raise InvalidInput(
                {
                    "generator": f"Generator {generator.pk}'s model files ({', '.join(missing)}) are "
                    "missing from storage, so it cannot be exported; train it again."
                }
            )
        write_package(
            out,
            model_dir=folder,
            extras=extras,
            manifest={
                "kind": generator.kind,
                "name": generator.name,
                "resolution": generator.resolution,
                "channels": generator.channels,
                "classes": generator.classes,
                "config": generator.config,
                "quality": generator.quality,
                "orientation": generator.orientation,
                "warnings": generator.warnings,
                "preset": generator.preset,
                "augment": generator.augment,
                "lineage": {
                    "base_name": generator.base_name,
                    "exported_from": {"id": generator.pk, "name": generator.name},
                },
            },
        )
    out.seek(0)
    return out


def import_generator(*, owner, file, name: str | None = None, shared: bool = False) -> Generator:
    """A ready generator of ``owner`` from an export ``file`` (a file-like object); raises InvalidInput (``file``)
    for a damaged, changed or foreign file, an unknown type or a newer architecture version. Nothing is kept then."""
    with storage.scratch("import") as model:  # the model's files, as the export had them
        try:
            manifest = read_package(file, model, max_bytes=settings.SYNTHGEN_MAX_ZIP_TOTAL_BYTES)
        except PackageError as error:
            raise InvalidInput({"file": f"This file cannot be imported: {error}."}) from None
        quality = _of(manifest, "quality", dict, None)
        warnings = [str(w) for w in _of(manifest, "warnings", list, [])]
        if not readable_report(quality):
            quality = None
            warnings.append(
                "The quality report in the imported file could not be read and was left out: generate "
                "a few images and look at them before you rely on this generator."
            )
        with transaction.atomic():
            generator = Generator.objects.create(
                owner=owner,
                name=(name or manifest["name"]).strip()[:120] or "imported generator",
                kind=manifest["kind"],
                resolution=manifest["resolution"],
                channels=manifest["channels"],
                preset=str(manifest.get("preset") or "")[:20],
                augment=bool(manifest.get("augment")),
                config=json.loads((model / CONFIG_FILE).read_text()),
                quality=quality,
                classes=manifest["classes"],
                orientation=_of(manifest, "orientation", dict, {}),
                warnings=warnings,
                shared=shared,
                status=Generator.Status.READY,
                base_name=str((manifest.get("lineage") or {}).get("base_name") or "")[:120],
            )
            files_dir = generator_files_dir(generator.pk)
            try:
                storage.publish(model, files_dir)
            except BaseException:
                storage.remove_prefix(files_dir)
                raise
            generator.files_dir = files_dir
            has_samples = (model / storage.GENERATOR_SAMPLE_GRID).exists()
            generator.sample_grid = storage.in_folder(files_dir, storage.GENERATOR_SAMPLE_GRID) if has_samples else ""
            generator.save(update_fields=["files_dir", "sample_grid", "updated_at"])
    return generator


def _of(manifest: dict, key: str, kind: type, default):
    """The manifest's ``key`` when it is a ``kind`` (a report, a list), else ``default``."""
    value = manifest.get(key)
    return value if isinstance(value, kind) else default
