"""One file that carries a trained generator from one installation to another (export and import). Django-free.

The file is a zip:

* ``manifest.json``: ``format`` ("synthgen-generator"), ``format_version``, ``kind``, ``architecture_version``,
  ``name``, ``resolution``, ``channels``, ``classes``, ``config``, ``quality`` (the quality report), ``orientation``,
  ``warnings``, ``lineage`` (``base_name``: what it was fine-tuned from, ``exported_from``: its id and name where it
  was exported) and ``files``: every other member's sha256 and size;
* the model as its type saved it: ``weights.safetensors``, ``config.json`` and, for a DCGAN, its
  ``discriminator.safetensors`` (what a generator fine-tuned from it starts from); ``samples.png``, its grid.

The training photos are not in it (they are the owner's): a generator imported elsewhere generates without the copy
filter and the class filter, which compare with them.

:func:`read_package` checks everything before anything is kept: a zip, within limits, with the manifest of this
format, a known type and an architecture version this code knows, every listed file present with its checksum (a
changed byte is refused), tensors that parse as safetensors (never unpickled), and a model that the type loads with
them. It raises :class:`PackageError`, whose message says what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, TypeVarTuple

import torch
from safetensors import SafetensorError, safe_open

from apps.ml.engine import registry
from apps.ml.engine.base import RESOLUTIONS, GeneratorType
from apps.ml.engine.config import TrainingConfig

FORMAT = "synthgen-generator"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILES = ("weights.safetensors", "config.json", "discriminator.safetensors")  # the first two required
EXTRA_FILES = ("samples.png",)
REQUIRED = ("weights.safetensors", "config.json")
MAX_MEMBERS = 16
# The JSON members are parsed in memory, where a small deflated file can grow into gigabytes of objects: each is
# capped far below the zip's total (a real manifest or config is a few kilobytes).
MAX_JSON_BYTES = 8 * 1024**2

_Args = TypeVarTuple("_Args")
_Result = TypeVar("_Result")


class PackageError(ValueError):
    """A file that is not a generator this installation can import; the message says why."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_package(
    out: BinaryIO, *, model_dir: Path, manifest: dict[str, Any], extras: dict[str, bytes] | None = None
) -> None:
    """Write the export of the model saved in ``model_dir`` (weights, config, a DCGAN's discriminator) with
    ``manifest`` (name, classes, quality, lineage, ...: completed here with the format, the type's architecture
    version and the files' checksums) and ``extras`` (``samples.png``) to ``out``."""
    model_dir = Path(model_dir)
    files = {name: (model_dir / name).read_bytes() for name in MODEL_FILES if (model_dir / name).exists()}
    files.update({name: data for name, data in (extras or {}).items() if name in EXTRA_FILES and data})
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise PackageError(f"the model folder lacks {', '.join(missing)}")
    config = json.loads(files["config.json"])
    generator_type = registry.get(manifest["kind"])
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **manifest,
        "architecture_version": generator_type.architecture_version_of(config),
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in files.items()},
    }
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        for name, data in files.items():
            archive.writestr(name, data)


def read_package(source: BinaryIO | bytes, into: Path, *, max_bytes: int = 2 * 1024**3) -> dict[str, Any]:
    """Check the export ``source`` and write its model files into the folder ``into``; returns its manifest.

    Raises :class:`PackageError` for a file that is not a zip (or a truncated one), not this format, of an unknown
    type or a newer architecture version, with a missing or changed file, tensors that are not safetensors, or a
    model its type cannot load; ``max_bytes`` caps the unpacked size."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise PackageError(f"not a generator export: the file is not a complete zip ({error})") from None
    with archive:
        members = archive.infolist()
        names = [m.filename for m in members]
        if MANIFEST not in names:
            raise PackageError(f"not a generator export: it has no {MANIFEST}")
        if len(members) > MAX_MEMBERS or sum(m.file_size for m in members) > max_bytes:
            raise PackageError("not a generator export: too many or too large files")
        for member in members:
            if member.filename.endswith(".json") and member.file_size > MAX_JSON_BYTES:
                raise PackageError(
                    f"{member.filename} is larger than {MAX_JSON_BYTES // 1024**2} MB: not a generator export"
                )
        manifest = _unexpected_is_refused(_manifest, _read(archive, MANIFEST))
        listed = manifest["files"]
        unknown = [name for name in listed if name not in MODEL_FILES + EXTRA_FILES]
        if unknown:
            raise PackageError(f"the export lists files this installation does not know: {', '.join(unknown)}")
        missing = [name for name in REQUIRED if name not in listed]
        if missing:
            raise PackageError(f"the export lacks {', '.join(missing)}")
        contents = {}
        for name, expected in listed.items():
            if name not in names:
                raise PackageError(f"the export lacks {name}, which its manifest lists")
            data = _read(archive, name)
            if not isinstance(expected, dict) or _sha256(data) != expected.get("sha256"):
                raise PackageError(
                    f"{name} is not the file that was exported (its checksum differs): the export "
                    "was changed or damaged"
                )
            contents[name] = data
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():  # written first: the tensor files' headers are read from disk
        (into / name).write_bytes(data)
    try:
        _unexpected_is_refused(_check_model, manifest, contents, into)
        try:  # the type loads what was written: the tensors fit the config's networks
            registry.get(manifest["kind"]).load(into, device="cpu")
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise PackageError(f"the weights do not fit the model the config describes: {error}") from None
    except PackageError:
        for name in contents:  # nothing of a refused file is kept
            (into / name).unlink(missing_ok=True)
        raise
    return manifest


def _unexpected_is_refused(check: Callable[[*_Args], _Result], *args: *_Args) -> _Result:
    """``check(*args)``, with any error it did not foresee (JSON nested too deep, a value of an odd type) turned
    into a refusal: a file from outside is never a server error."""
    try:
        return check(*args)
    except PackageError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever a crafted file provokes
        raise PackageError(f"not a generator export this installation can read ({type(error).__name__})") from None


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as error:  # CRC, truncated data
        raise PackageError(f"the export is damaged: {name} cannot be read ({error})") from None


def _manifest(data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise PackageError(f"not a generator export: {MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PackageError(f"not a generator export: {MANIFEST} is not a {FORMAT} manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PackageError(
            f"this export is of format version {version!r}; this installation reads up to "
            f"{FORMAT_VERSION}: update SynthGen to import it"
        )
    kind = manifest.get("kind")
    known = registry.all_types()
    if kind not in known:
        raise PackageError(f"unknown generator type {kind!r}; this installation knows {', '.join(known)}")
    architecture = manifest.get("architecture_version")
    newest = known[kind].newest_architecture_version
    if not isinstance(architecture, int) or isinstance(architecture, bool) or architecture < 1:
        raise PackageError("the export's architecture_version is missing or not a positive integer")
    if architecture > newest:
        raise PackageError(
            f"this {kind} generator has architecture version {architecture}; this installation knows "
            f"up to {newest}: update SynthGen to import it"
        )
    for key, kind_of in (("name", str), ("resolution", int), ("channels", int), ("classes", list), ("files", dict)):
        if not isinstance(manifest.get(key), kind_of) or isinstance(manifest.get(key), bool):
            raise PackageError(f"the export's manifest has no valid '{key}'")
    return manifest


def _check_model(manifest: dict[str, Any], contents: dict[str, bytes], folder: Path) -> None:
    """The config agrees with the manifest, and every tensor file (written in ``folder``) is safetensors whose
    tensors are the ones the config's networks have (headers only: never unpickled, no tensor read)."""
    try:
        config = json.loads(contents["config.json"])
    except (UnicodeDecodeError, ValueError):
        raise PackageError("config.json is not JSON") from None
    if not isinstance(config, dict):
        raise PackageError("config.json is not a config")
    for key in ("resolution", "channels"):
        if config.get(key) != manifest[key]:
            raise PackageError(f"config.json's {key} ({config.get(key)!r}) is not the manifest's ({manifest[key]!r})")
    if problems := _config_problems(registry.get(manifest["kind"]), config):
        raise PackageError(f"config.json asks for settings no request could: {problems[0]}")
    classes = manifest["classes"]
    if not all(
        isinstance(c, dict)
        and isinstance(c.get("name"), str)
        and type(c.get("image_count", 0)) is int
        and c.get("image_count", 0) >= 0
        for c in classes
    ):
        raise PackageError("the manifest's classes are not a list of {name, image_count}")
    if [c["name"] for c in classes] != list(config.get("classes") or []) or len(classes) != int(
        config.get("num_classes") or 0
    ):
        raise PackageError("the manifest's classes are not the ones config.json's model learnt")
    version = registry.get(manifest["kind"]).architecture_version_of(config)
    if version != manifest["architecture_version"]:
        raise PackageError(
            f"config.json's architecture version ({version}) is not the manifest's ({manifest['architecture_version']})"
        )
    shapes = {name: _safetensors_shapes(folder / name) for name in contents if name.endswith(".safetensors")}
    # The network the config describes, built on the "meta" device (no memory): its tensors must be the weights',
    # name for name and shape for shape, before a real one is built (a config may not ask for a network the
    # weights do not fill).
    try:
        with torch.device("meta"):
            wanted = registry.get(manifest["kind"])(config, device="meta").weights_state()
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise PackageError(f"config.json does not describe a model this installation builds: {error}") from None
    weights = shapes["weights.safetensors"]
    mismatched = sorted(set(wanted) ^ set(weights)) or sorted(
        key for key in wanted if tuple(wanted[key].shape) != weights[key]
    )
    if mismatched:
        raise PackageError(f"the weights do not fit the model the config describes (e.g. {mismatched[0]})")


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in the safetensors file ``path``, from its header alone (the safetensors library checks
    the format: a header within the file, tensors that fill it without gaps or overlaps). Raises
    :class:`PackageError` for anything else."""
    with path.open("rb") as file:
        head = file.read(8)
    if len(head) == 8 and struct.unpack("<Q", head)[0] > path.stat().st_size - 8:
        raise PackageError(f"{path.name} is not a safetensors file (its header runs past the end of the file)")
    try:
        with safe_open(path, framework="pt") as tensors:
            return {key: tuple(tensors.get_slice(key).get_shape()) for key in tensors.keys()}
    except (SafetensorError, ValueError, RuntimeError, OSError) as error:
        raise PackageError(f"{path.name} is not a safetensors file ({error})") from None


def _config_problems(generator_type: type[GeneratorType], config: dict[str, Any]) -> list[str]:
    """What the config builder would refuse in an imported ``config``: the size and channels, and each setting's type
    and range (as a request's options are checked). The weights bound the networks, not what the config asks for
    beside them (a noise schedule of ``timesteps``, the image size each generation allocates)."""
    problems = []
    if config.get("resolution") not in RESOLUTIONS:
        problems.append(f"'resolution' must be one of {', '.join(map(str, RESOLUTIONS))}")
    if config.get("channels") not in (1, 3):
        problems.append("'channels' must be 1 or 3")
    if generator_type.config_class is None:
        return problems
    try:
        typed: TrainingConfig = generator_type.config_class.from_dict(config)
    except (ValueError, TypeError) as error:
        return [*problems, str(error)]
    for name in typed.settings():
        if name in config and (problem := typed.check_setting(name, config[name])[0]):
            problems.append(problem)
    return problems
