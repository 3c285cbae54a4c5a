"""The one place generator types are registered and looked up, by their ``kind`` (e.g. ``"dcgan"``).

A built-in type is one line of :data:`BUILTIN_TYPES`; a type kept elsewhere (a test's, a plug-in's) is registered
by decorating its class with :func:`register`.
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from apps.ml.engine.base import GeneratorType

# The built-in types ("module:class"), imported on the first lookup rather than with this module: every process
# imports the registry (the web's URLs, each management command), and the types bring torchvision and their
# networks (about 2.5 s on this CPU) that a process which never looks a type up does not need.
BUILTIN_TYPES = ("apps.ml.dcgan:DCGAN", "apps.ml.ddim:DDIM")

_TYPES: dict[str, type[GeneratorType]] = {}
T = TypeVar("T", bound=type[GeneratorType])


def register(cls: T) -> T:
    """Make a generator type available everywhere under its ``kind`` (usable as a class decorator)."""
    _TYPES[cls.kind] = cls
    return cls


def unregister(kind: str) -> None:
    _TYPES.pop(kind, None)


def get(kind: str) -> type[GeneratorType]:
    """The generator type registered as ``kind``; a KeyError naming the known ones when there is none."""
    _load_builtin_types()
    try:
        return _TYPES[kind]
    except KeyError:
        raise KeyError(f"unknown generator type {kind!r}; known: {', '.join(sorted(_TYPES))}") from None


def all_types() -> dict[str, type[GeneratorType]]:
    """Every registered type by its ``kind``, in registration order."""
    _load_builtin_types()
    return dict(_TYPES)


def choices() -> list[tuple[str, str]]:
    """(kind, label) pairs for forms and API fields, in registration order."""
    return [(kind, cls.label) for kind, cls in all_types().items()]


def _load_builtin_types() -> None:
    """Register the built-in types unless they are (a type unregistered by a test comes back on the next lookup)."""
    for path in BUILTIN_TYPES:
        module, name = path.split(":")
        cls: type[GeneratorType] = getattr(importlib.import_module(module), name)
        _TYPES.setdefault(cls.kind, cls)
