"""The one place generator types are registered and looked up, by their ``kind`` (e.g. ``"dcgan"``).

A built-in type is registered by one line at the bottom of this module; a type kept elsewhere (a test's, a
plug-in's) by decorating its class with :func:`register`.
"""

from __future__ import annotations

from typing import TypeVar

from apps.ml.dcgan import DCGAN
from apps.ml.ddim import DDIM
from apps.ml.engine.base import GeneratorType

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
    try:
        return _TYPES[kind]
    except KeyError:
        raise KeyError(f"unknown generator type {kind!r}; known: {', '.join(sorted(_TYPES))}") from None


def all_types() -> dict[str, type[GeneratorType]]:
    """Every registered type by its ``kind``, in registration order."""
    return dict(_TYPES)


def choices() -> list[tuple[str, str]]:
    """(kind, label) pairs for forms and API fields, in registration order."""
    return [(kind, cls.label) for kind, cls in all_types().items()]


# The built-in types.
register(DCGAN)
register(DDIM)
