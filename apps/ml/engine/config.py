"""Typed training configs: one dataclass per generator type.

A config is built for a dataset and a device (:meth:`TrainingConfig.from_preset`), changed only
through :meth:`~TrainingConfig.replace`, which checks every setting's type and range and names
the known settings when a key is unknown, and saved as JSON (:meth:`~TrainingConfig.to_dict`,
:meth:`~TrainingConfig.from_dict`; a file written by an older version, with settings missing or
since removed, still loads).

Declare a setting with :func:`setting` to give it a range or a list of choices. Code that reads a
config as a dict (``config["total_steps"]``, ``config.get("seed", 0)``) keeps working: a config
is also a mapping of its settings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from apps.ml.engine.base import PRESETS, RESOLUTIONS, GeneratorType

Self = typing.TypeVar("Self", bound="TrainingConfig")


class ConfigError(ValueError):
    """Settings that cannot be used; ``problems`` lists one sentence per setting."""

    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


_PRESET_STEPS = "the preset's steps"
_SHARE_WORDS = {1 / 2: "half", 1 / 3: "a third", 1 / 4: "a quarter", 1 / 5: "a fifth", 2 / 3: "two thirds"}


def share_of(fraction: float, what: str) -> str:
    """``fraction`` of ``what`` in plain words, for a recipe's sentence: "half its learning rates", "a third of
    the preset's steps", "twice ...", ``what`` itself at 1, else a percentage ("40 % of ...")."""
    if fraction == 1:
        return what
    if fraction == 2:
        return f"twice {what}"
    word = next((w for share, w in _SHARE_WORDS.items() if abs(share - fraction) < 1e-9), None)
    if word == "half":
        return f"half {what}"
    return f"{word or f'{fraction * 100:.0f} %'} of {what}"


def capitalised(words: str) -> str:
    """``words`` with its first letter upper case (str.capitalize would lower the rest)."""
    return words[:1].upper() + words[1:]


def recipe_words(steps: float, learning_rate: float, rate_noun: str = "its learning rate") -> str:
    """A fine-tuning recipe's length and learning rate in words: "a third of the preset's steps at half its
    learning rates" for ``steps`` 1/3, ``learning_rate`` 1/2 and ``rate_noun`` "its learning rates"."""
    return f"{share_of(steps, _PRESET_STEPS)} at {share_of(learning_rate, rate_noun)}"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A config field with an optional inclusive range (``low``, ``high``) or a list of ``choices``."""
    metadata = {"low": low, "high": high, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(kw_only=True, eq=False)
class TrainingConfig(MutableMapping[str, Any]):
    """What every type's config holds: the data it was built for and what the shared trainer reads."""

    # Fixed by the dataset and the request: not advanced settings.
    FIXED: ClassVar[tuple[str, ...]] = ("kind", "resolution", "channels", "preset", "image_count")
    kind_key: ClassVar[str] = ""  # the generator type, for messages ("not a setting of dcgan")
    # The settings that shape the weights: a fine-tuned model takes them from its base (for_base) and keeps them.
    BASE_SHAPE: ClassVar[tuple[str, ...]] = ()
    # Settings that only mean something when fine-tuning from a base (e.g. FreezeD): refused without one.
    BASE_ONLY: ClassVar[tuple[str, ...]] = ()
    # Each class's resolved field annotations, set on first use (_hints).
    _hint_cache: ClassVar[dict[str, Any]]

    resolution: int = setting(low=1)
    channels: int = setting(choices=(1, 3))
    preset: str = setting(choices=PRESETS)
    image_count: int = setting(0, low=0)
    total_steps: int = setting(low=1, high=1_000_000)
    batch_size: int = setting(low=1, high=4096)
    checkpoint_every: int = setting(low=1, high=1_000_000)
    report_every: int = setting(low=1, high=1_000_000)
    seed: int = setting(0, low=0, high=2**63 - 1)
    # Keys of a saved config that are not settings (any more): kept so that a round trip loses nothing.
    extras: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ building

    @classmethod
    def from_preset(
        cls: type[Self], *, resolution: int, channels: int, preset: str, image_count: int, device: str = "cpu"
    ) -> Self:
        """The recipe for a preset, resolution, dataset size and device."""
        raise NotImplementedError

    def for_photos(self: Self, orientation: dict[str, Any] | None) -> Self:
        """The recipe adapted to which way the photos face (:meth:`apps.ml.engine.orientation.Orientation.as_dict`;
        None: not measured). The default changes nothing: a type whose training adds no mirror
        images or turns has nothing to adapt."""
        return self

    def for_classes(self: Self, names: list[str], counts: list[int] | None = None) -> Self:
        """A config that learns the classes ``names`` (label order; ``counts``: training photos of each).
        Only a type with ``supports_labels`` has one (build_config refuses classes for the others)."""
        raise ValueError(f"{self.kind_key or type(self).__name__} learns no classes")

    def for_base(self: Self, base: dict[str, Any]) -> Self:
        """The config of a model fine-tuned from a base generator whose config is ``base``: the base's model
        shape (:attr:`BASE_SHAPE`) and the type's fine-tuning recipe in place of this preset's. Only a type
        that can be fine-tuned has one."""
        raise ValueError(f"{self.kind_key or type(self).__name__} cannot start from another generator")

    def _base_shape(self, base: dict[str, Any]) -> dict[str, Any]:
        """The :attr:`BASE_SHAPE` settings of ``base`` as replace() changes (keys the base lacks: left as they are)."""
        return {key: base[key] for key in self.BASE_SHAPE if key in base}

    def base_problems(self, base: dict[str, Any]) -> list[str]:
        """Why this config cannot start from the weights of ``base`` (a setting that shapes them differs)."""
        return [
            f"'{key}' is {getattr(self, key)!r} but the base generator's is {base[key]!r}: a fine-tuned model "
            f"keeps its base's shape; leave '{key}' out."
            for key in self.BASE_SHAPE
            if key in base and _plain(getattr(self, key)) != base[key]
        ]

    @staticmethod
    def check_request(*, resolution: int, channels: int, preset: str) -> None:
        """The checks every type's ``from_preset`` starts with."""
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}")
        if channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {PRESETS}")

    def replace(self: Self, **options: Any) -> Self:
        """A copy with ``options`` over these settings; raises :class:`ConfigError` naming every problem."""
        problems = []
        values = {}
        for key, value in options.items():
            problem, value = self.check_setting(key, value)
            if problem:
                problems.append(problem)
            else:
                values[key] = value
        if problems:
            raise ConfigError(problems)
        return dataclasses.replace(self, **values, extras=dict(self.extras))

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """The names of the advanced settings (every field but the fixed ones)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in cls.FIXED and f.name != "extras")

    def tunable(self) -> dict[str, Any]:
        """The advanced settings and their values here (what the API and the wizard list)."""
        return {name: getattr(self, name) for name in self.settings()}

    def check_setting(self, key: str, value: Any) -> tuple[str | None, Any]:
        """(None, the value as stored) when ``value`` suits the setting ``key``, else (the problem, None)."""
        known = self.settings()
        if key not in known:
            kind = self.kind_key or type(self).__name__
            return f"'{key}' is not a setting of {kind}; known: {', '.join(sorted(known))}.", None
        current = getattr(self, key)
        ok, value = _coerce(_hints(type(self))[key], value)
        if not ok:
            return f"'{key}' must be like {current!r} (got {value!r}).", None
        meta = next(f for f in dataclasses.fields(self) if f.name == key).metadata
        low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
        if choices is not None and value not in choices:
            return f"'{key}' must be one of {', '.join(map(repr, choices))}.", None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (low is not None and value < low) or (high is not None and value > high):
                return f"'{key}' must be between {_number(low)} and {_number(high)}.", None
        return None, value

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``config.json`` and the generator's ``config`` hold)."""
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extras"}
        return {**data, **self.extras}

    @classmethod
    def from_dict(cls: type[Self], data: typing.Mapping[str, Any]) -> Self:
        """Read :meth:`to_dict`'s output. Missing settings take their defaults; unknown keys are kept
        as ``extras``. Values are not range-checked: a saved config is taken as it was trained."""
        if isinstance(data, TrainingConfig):
            data = data.to_dict()
        names = {f.name for f in dataclasses.fields(cls)} - {"extras"}
        known = {k: v for k, v in data.items() if k in names}
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name in names
            and f.name not in known
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"config lacks {', '.join(missing)}")
        return cls(**known, extras={k: v for k, v in data.items() if k not in names})

    # ------------------------------------------------------------ the mapping view

    def _names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if f.name != "extras"]

    def __getitem__(self, key: str) -> Any:
        if key in self._names():
            return getattr(self, key)
        return self.extras[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._names():
            setattr(self, key, value)
        else:
            self.extras[key] = value

    def __delitem__(self, key: str) -> None:
        if key in self._names():
            raise KeyError(f"{key!r} is a setting; it cannot be removed")
        del self.extras[key]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._names(), *self.extras])

    def __len__(self) -> int:
        return len(self._names()) + len(self.extras)

    # Defining __eq__ leaves the class unhashable (Python sets __hash__ to None): a config is mutable.
    def __eq__(self, other: object) -> bool:
        if isinstance(other, typing.Mapping):
            return self.to_dict() == (other.to_dict() if isinstance(other, TrainingConfig) else dict(other))
        return NotImplemented


def _hints(cls: type[TrainingConfig]) -> dict[str, Any]:
    cache = cls.__dict__.get("_hint_cache")
    if cache is None:
        cache = typing.get_type_hints(cls)
        cls._hint_cache = cache
    return cache


def _coerce(hint: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits the annotation ``hint`` (JSON types), and the value as stored."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None
        for arg in args:
            if arg is not type(None):
                ok, coerced = _coerce(arg, value)
                if ok:
                    return True, coerced
        return False, value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        items = [_coerce(args[0], item) for item in value]
        return all(ok for ok, _ in items), [item for _, item in items]
    if hint is bool:
        return isinstance(value, bool), value
    if isinstance(value, bool):
        return False, value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, int), value
    if hint is float:
        return isinstance(value, (int, float)), float(value) if isinstance(value, (int, float)) else value
    if hint is str:
        return isinstance(value, str), value
    return True, value  # dict and any other annotation: taken as it is


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _number(value: float | None) -> str:
    return "any" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- what the app builds configs with

_COMMON_NAMES = ("total_steps", "batch_size", "checkpoint_every", "report_every", "seed")
_COMMON = {f.name: f for f in dataclasses.fields(TrainingConfig) if f.name in _COMMON_NAMES}
STANDARD_REQUEST: dict[str, Any] = dict(resolution=64, channels=3, preset="standard", image_count=500, device="cpu")


def settings_of(generator_type: type[GeneratorType]) -> dict[str, Any]:
    """A type's advanced settings with their values in the standard preset (64 px RGB, 500 images, CPU):
    what the API's generator types and the wizard list."""
    if generator_type.config_class is not None:
        config: TrainingConfig = generator_type.config_class.from_preset(**STANDARD_REQUEST)
        return config.tunable()
    defaults = generator_type.default_config(**STANDARD_REQUEST)
    return {key: value for key, value in defaults.items() if key not in TrainingConfig.FIXED}


def build_config(
    generator_type: type[GeneratorType],
    *,
    resolution: int,
    channels: int,
    preset: str,
    image_count: int,
    device: str,
    overrides: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    classes: list[str] | None = None,
    class_counts: list[int] | None = None,
    orientation: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config a run trains with, as JSON: the preset's recipe for this data and device, adapted to
    which way the photos face (``orientation``, :meth:`TrainingConfig.for_photos`), then the
    operator's ``overrides``, then the user's ``options``. Raises :class:`ConfigError` listing every
    problem (the overrides' problems say where they come from).

    ``classes``: the class names of a labelled dataset, in label order (label ``i`` is
    ``classes[i]``); the config gets ``num_classes`` and ``classes``, and with ``class_counts`` (the
    training photos of each) a training length for its shortest class (:meth:`TrainingConfig.for_classes`),
    before the overrides and options. Only a type with ``supports_labels`` takes them. None or empty:
    an unconditional config, as always.

    ``base``: the config of a base generator to fine-tune (:mod:`apps.ml.engine.transfer`): after the overrides,
    the base's model shape and the type's fine-tuning recipe (:meth:`TrainingConfig.for_base`) replace the
    preset's; the user's options still come last, and may not change the base's shape."""
    if not isinstance(options or {}, dict):
        raise ConfigError(['Advanced settings must be an object, e.g. {"total_steps": 2000}.'])
    class_problems = _class_problems(generator_type, classes)
    if class_problems:
        raise ConfigError(class_problems)
    request: dict[str, Any] = dict(
        resolution=resolution, channels=channels, preset=preset, image_count=image_count, device=device
    )
    if generator_type.config_class is None:
        if base is not None:
            raise ConfigError([f"{generator_type.kind} cannot start from another generator."])
        return _build_untyped(generator_type, request, overrides or {}, options or {})
    config: TrainingConfig = generator_type.config_class.from_preset(**request).for_photos(orientation)
    if classes:
        config = config.for_classes(list(classes), class_counts)
    try:
        config = config.replace(**(overrides or {}))
    except ConfigError as error:
        raise ConfigError([f"SYNTHGEN_TRAINING_OVERRIDES: {problem}" for problem in error.problems]) from None
    if base is not None:
        try:
            config = config.for_base(base)
        except ValueError as error:
            raise ConfigError([str(error)]) from None
    if base is None and (only := [key for key in config.BASE_ONLY if key in (options or {})]):
        raise ConfigError(
            [
                f"'{key}' applies only when fine-tuning from a base generator (base_generator); leave it "
                "out to train from scratch."
                for key in only
            ]
        )
    config = config.replace(**(options or {}))
    if base is not None and (problems := config.base_problems(base)):
        raise ConfigError(problems)
    return config.to_dict()


def _class_problems(generator_type: type[GeneratorType], classes: list[str] | None) -> list[str]:
    if not classes:
        return []
    if not getattr(generator_type, "supports_labels", False):
        return [
            f"{generator_type.kind} learns no classes: train it on one class, or pick a type that learns "
            f"a labelled dataset's classes."
        ]
    if not isinstance(classes, (list, tuple)) or not all(isinstance(name, str) and name for name in classes):
        return ["Classes must be a list of non-empty names."]
    if len(set(classes)) != len(classes):
        return ["Class names must be unique."]
    return []


def _build_untyped(
    generator_type: type[GeneratorType], request: dict[str, Any], overrides: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """For a type whose config is a plain dict: a value must be like the preset's (same JSON type)."""
    config = {**generator_type.default_config(**request), **overrides}
    known = [key for key in config if key not in TrainingConfig.FIXED]
    problems = []
    for key, value in options.items():
        if key not in known:
            problems.append(f"'{key}' is not a setting of {generator_type.kind}; known: {', '.join(sorted(known))}.")
        elif config[key] is not None and value is not None and not _coerce(type(config[key]), value)[0]:
            problems.append(f"'{key}' must be like {config[key]!r} (got {value!r}).")
        elif key in _COMMON:  # the settings every config has keep their ranges
            meta = _COMMON[key].metadata
            if not (meta["low"] is None or value >= meta["low"]) or not (meta["high"] is None or value <= meta["high"]):
                problems.append(f"'{key}' must be between {_number(meta['low'])} and {_number(meta['high'])}.")
    if problems:
        raise ConfigError(problems)
    return {**config, **options}
