"""What a job takes from its generator's folder in storage, loaded once per process: the model, the quality
filter's references (calibrated on the generator's real images), and a conditional generator's class filter
(trained the first time a job needs it, then kept in the generator's folder)."""

from __future__ import annotations

import logging
from functools import lru_cache

import torch
from safetensors.torch import load as load_safetensors

from apps.core import storage
from apps.generators.evaluation import classifier_settings  # the report's classifier recipe (steps, mirror)
from apps.generators.models import Generator
from apps.ml.engine import registry
from apps.ml.engine.base import GeneratorType
from apps.ml.engine.device import pick_device
from apps.ml.quality import filtering
from apps.ml.quality.class_filter import ClassFilter, train_class_filter

log = logging.getLogger(__name__)

# The filter's thresholds: under the key None for a one-class generator, under each class index for a
# conditional one (copies are looked for among the image's own class's photos, by that class's thresholds).
References = dict[int | None, filtering.FilterReference]


@lru_cache(maxsize=4)
def load_model(generator_id: int, kind: str, files_dir: str, version: str) -> GeneratorType:
    """The generator's model, fetched from storage into a scratch folder and loaded (into memory)."""
    with storage.scratch(storage.generator_scratch_tag(generator_id)) as folder:
        storage.fetch(files_dir, folder, skip=storage.GENERATOR_EXTRAS)
        return registry.get(kind).load(folder, device=pick_device())


def _stored_tensors(name: str) -> dict[str, torch.Tensor] | None:
    try:
        return load_safetensors(storage.read_bytes(name))
    except FileNotFoundError:
        return None


def _labels(tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
    return tensors["labels"].long() if "labels" in tensors else None


@lru_cache(maxsize=4)
def filter_references(generator_id: int, files_dir: str, version: str, classes: int) -> References | None:
    """The filter's thresholds, calibrated on the generator's real images (None for generators without them):
    one reference for a one-class generator, one per class for a conditional one (see :data:`References`)."""
    train = _stored_tensors(storage.in_folder(files_dir, storage.GENERATOR_REFERENCE))
    if train is None:
        return None
    heldout = _stored_tensors(storage.in_folder(files_dir, storage.GENERATOR_HELDOUT)) or {}
    augmented = _stored_tensors(storage.in_folder(files_dir, storage.GENERATOR_AUGMENTED)) or {}
    train_labels = _labels(train)
    if classes and train_labels is not None:
        by_class = filtering.build_class_references(
            train["images"],
            train_labels,
            classes,
            heldout=heldout.get("images"),
            heldout_labels=_labels(heldout),
            augmented=augmented.get("images"),
            augmented_labels=_labels(augmented),
        )
        return dict(by_class.items())
    return {None: filtering.build_reference(train["images"], heldout.get("images"), augmented.get("images"))}


_CLASS_FILTERS: dict[tuple[int, str, int], ClassFilter | None] = {}  # this process's: (generator, folder, classes)


def class_filter(generator: Generator) -> ClassFilter | None:
    """The class filter of a conditional generator (None for one-class generators and those without labelled
    reference images): trained on its training photos and calibrated on its held-out ones the first time a
    job needs it, then kept in the generator's folder (and in this process) so no job trains it again."""
    if not generator.classes:
        return None
    key = (generator.pk, generator.files_dir, len(generator.classes))
    if key not in _CLASS_FILTERS:
        while len(_CLASS_FILTERS) >= 4:
            _CLASS_FILTERS.pop(next(iter(_CLASS_FILTERS)))
        _CLASS_FILTERS[key] = _stored_or_trained_class_filter(generator)
    return _CLASS_FILTERS[key]


def _stored_or_trained_class_filter(generator: Generator) -> ClassFilter | None:
    name = storage.in_folder(generator.files_dir, storage.GENERATOR_CLASS_FILTER)
    try:
        stored = ClassFilter.from_bytes(storage.read_bytes(name))
    except FileNotFoundError:
        stored = None
    if stored is not None and stored.classes == len(generator.classes):
        return stored
    train = _stored_tensors(storage.in_folder(generator.files_dir, storage.GENERATOR_REFERENCE))
    train_labels = _labels(train) if train is not None else None
    if train is None or train_labels is None:
        return None
    heldout = _stored_tensors(storage.in_folder(generator.files_dir, storage.GENERATOR_HELDOUT)) or {}
    try:
        trained = train_class_filter(
            train["images"],
            train_labels,
            heldout.get("images"),
            _labels(heldout),
            classes=len(generator.classes),
            settings=classifier_settings(generator, pick_device()),
        )
    except ValueError:  # a class without training photos: nothing to learn it from
        log.warning("generator %s: no class filter (a class has no training photos)", generator.pk)
        return None
    storage.write_bytes(name, trained.to_bytes())
    return trained
