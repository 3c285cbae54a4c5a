"""The one place generator types are registered and looked up."""

from __future__ import annotations

from apps.ml.engine.base import GeneratorType

_TYPES: dict[str, type[GeneratorType]] = {}


def register(cls: type[GeneratorType]) -> type[GeneratorType]:
    """Make a generator type available everywhere (usable as a class decorator)."""
    _TYPES[cls.key] = cls
    return cls


def unregister(key: str) -> None:
    _TYPES.pop(key, None)


def get(key: str) -> type[GeneratorType]:
    _load_builtin_types()
    try:
        return _TYPES[key]
    except KeyError:
        raise KeyError(f"unknown generator type {key!r}; known: {', '.join(sorted(_TYPES))}") from None


def all_types() -> dict[str, type[GeneratorType]]:
    _load_builtin_types()
    return dict(_TYPES)


def choices() -> list[tuple[str, str]]:
    """(key, label) pairs for forms and API fields, in registration order."""
    return [(key, cls.label) for key, cls in all_types().items()]


def _load_builtin_types() -> None:
    """The built-in types, registered on first use (imported lazily: importing the registry stays cheap)."""
    from apps.ml.dcgan import DCGAN
    from apps.ml.ddim import DDIM

    for cls in (DCGAN, DDIM):
        _TYPES.setdefault(cls.key, cls)
