"""The REST API's serializers for generators, their training runs and the generator types: what api.py's views
read from requests and write in responses (and the OpenAPI schema says of them)."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers

from apps.core import fields as json_fields
from apps.datasets.api import ClassCountSerializer
from apps.datasets.selectors import datasets_for
from apps.ml.engine import registry
from apps.ml.engine.base import PRESETS, RESOLUTIONS
from apps.ml.engine.orientation import describe as describe_orientation

from . import estimates, selectors
from .models import Generator, TrainingRun


class ProgressSerializer(serializers.Serializer):
    step = serializers.IntegerField()
    total = serializers.IntegerField()
    eta_seconds = serializers.FloatField(allow_null=True)


class RunSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    estimate = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "generator",
            "status",
            "stage",
            "progress",
            "losses",
            "warnings",
            "device",
            "image_count",
            "error",
            "started_at",
            "finished_at",
            "cancel_requested",
            "estimated_seconds",
            "estimate_source",
            "train_seconds",
            "estimate",
        ]

    def get_estimate(self, run) -> str:
        """The training time expected when training started against the time it took, in words ("" without)."""
        return estimates.run_comparison(run)

    @extend_schema(responses=ProgressSerializer)
    def get_progress(self, run) -> dict:
        return {"step": run.step, "total": run.total_steps, "eta_seconds": selectors.eta_seconds(run)}


class OrientationSerializer(serializers.Serializer):
    """Which way the training photos face (apps.ml.engine.orientation), measured when training prepared them."""

    images = serializers.IntegerField()
    mirrors = serializers.BooleanField(help_text="Mirror images are the same kind of photo: augmentation may add them.")
    rotations = serializers.BooleanField(help_text="Quarter turns are too (photos with no fixed way up).")
    mirror_share = serializers.FloatField(
        allow_null=True,
        help_text=("Share of the photos closer to the mirrored mean image than to the mean (null: too few photos)."),
    )
    turn_share = serializers.FloatField(allow_null=True)
    asymmetry = serializers.FloatField(
        allow_null=True,
        help_text=("The mean image's mirror asymmetry over the photos' spread (largest class); below 0.1: mirrors."),
    )
    turn_asymmetry = serializers.FloatField(allow_null=True)
    classes = serializers.DictField(child=serializers.DictField(), help_text="The same per class (labelled datasets).")
    summary = serializers.CharField(help_text="What it means for the augmentation, in plain words.")


class BaseGeneratorSerializer(serializers.Serializer):
    """The generator this one was fine-tuned from: ``id`` null once the base was deleted (or it lives on
    another installation: an imported generator); ``name`` stays."""

    id = serializers.IntegerField(allow_null=True)
    name = serializers.CharField()


class GeneratorSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    base_generator = serializers.SerializerMethodField()
    run = serializers.SerializerMethodField()
    stage = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    sample_grid_url = serializers.SerializerMethodField()
    uses_sampling_steps = serializers.SerializerMethodField()
    orientation = serializers.SerializerMethodField()
    classes = ClassCountSerializer(
        many=True,
        read_only=True,
        help_text=(
            "A conditional generator's classes (label order) and the real photos of each it learned from; "
            "empty for a one-class generator. Generate them with `counts`, `balance_to` or `class`."
        ),
    )

    class Meta:
        model = Generator
        fields = [
            "id",
            "name",
            "kind",
            "resolution",
            "channels",
            "dataset",
            "augment",
            "preset",
            "shared",
            "owner",
            "status",
            "stage",
            "progress",
            "run",
            "error",
            "warnings",
            "sample_grid_url",
            "uses_sampling_steps",
            "classes",
            "orientation",
            "quality",
            "config",
            "base_generator",
            "missing_files",
            "created_at",
        ]
        extra_kwargs = {
            "missing_files": {
                "read_only": True,
                "help_text": "A broken generator's files that are gone from storage (the storage check found them "
                'missing), e.g. ["weights.safetensors"]; empty otherwise.',
            }
        }

    @extend_schema_field(BaseGeneratorSerializer(allow_null=True))
    def get_base_generator(self, generator) -> dict | None:
        """What it was fine-tuned from; null when trained from scratch."""
        if not generator.base_name:
            return None
        return {"id": generator.base_generator_id, "name": generator.base_name}

    def _run(self, generator):
        cache = self.context.setdefault("_runs", {})
        if generator.pk not in cache:
            cache[generator.pk] = selectors.latest_run(generator)
        return cache[generator.pk]

    def get_run(self, generator) -> int | None:
        run = self._run(generator)
        return run.pk if run else None

    def get_stage(self, generator) -> str | None:
        run = self._run(generator)
        return run.stage if run else None

    @extend_schema(responses=ProgressSerializer)
    def get_progress(self, generator) -> dict | None:
        run = self._run(generator)
        if run is None:
            return None
        return {"step": run.step, "total": run.total_steps, "eta_seconds": selectors.eta_seconds(run)}

    def get_error(self, generator) -> str:
        if generator.lost_message:
            return generator.lost_message
        run = self._run(generator)
        return run.error if run else ""

    def get_sample_grid_url(self, generator) -> str | None:
        if not generator.sample_grid:
            return None
        return self.context["request"].build_absolute_uri(reverse("api:generator-sample-grid", args=[generator.pk]))

    @extend_schema_field(OrientationSerializer(allow_null=True))
    def get_orientation(self, generator) -> dict | None:
        if not generator.orientation:
            return None  # not prepared yet, or trained before orientation was measured
        keys = OrientationSerializer().fields
        return {
            **{key: generator.orientation.get(key) for key in keys if key != "summary"},
            "summary": describe_orientation(generator.orientation),
        }

    def get_uses_sampling_steps(self, generator) -> bool:
        generator_type = registry.all_types().get(generator.kind)
        return bool(generator_type and generator_type.uses_sampling_steps)


# The request bodies below are JSON (GeneratorViewSet.parser_classes), read with fields that take exactly
# the JSON types the schema gives (apps/core/fields.py).


class GeneratorCreateSerializer(serializers.Serializer):
    name = json_fields.CharField(max_length=120)
    dataset = json_fields.PrimaryKeyRelatedField(queryset=datasets_for(None).none())
    kind = json_fields.ChoiceField(choices=[], help_text="The generator type (GET /api/generator-types/ lists them).")
    resolution = json_fields.ChoiceField(
        choices=RESOLUTIONS,
        required=False,
        allow_null=True,
        help_text="Left out: 64, or 32 when most images are smaller than 64 px.",
    )
    augment = json_fields.BooleanField(default=False)
    preset = json_fields.ChoiceField(
        choices=PRESETS,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Left out: chosen by dataset size.",
    )
    shared = json_fields.BooleanField(default=True)
    options = serializers.DictField(
        required=False,
        help_text=(
            'Advanced: settings over the preset, e.g. {"total_steps": 2000}; '
            "GET /api/generator-types/ lists each type's settings."
        ),
    )
    base_generator = json_fields.IntegerField(
        required=False,
        allow_null=True,
        help_text=(
            "Fine-tune: the id of a ready generator you can see (yours or shared) of the same type, resolution and "
            "channels; training starts from its weights with the type's fine-tuning recipe (a third of the preset's "
            "steps; its `fine_tuning` in /api/generator-types/ says the rest) unless options set those. Another "
            "one: 400 naming the mismatch and listing the generators that fit. Left out (or null): train from "
            "scratch."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = registry.choices()  # read at request time: new types appear at once
        request = self.context.get("request")
        if request is not None:
            self.fields["dataset"].queryset = datasets_for(request.user)


class GeneratorFilterSerializer(serializers.Serializer):
    """The list's filters. ``kind`` is any text (an unknown type lists nothing, empty: no filter); ``status`` must
    be one of the states."""

    kind = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    status = serializers.ChoiceField(choices=Generator.Status.choices, required=False)


class ImportSerializer(serializers.Serializer):
    """A generator exported by GET /api/generators/{id}/export/ (on this installation or another)."""

    file = serializers.FileField(help_text="The export file (a zip: manifest.json, weights as safetensors, config).")
    name = serializers.CharField(max_length=120, required=False, help_text="Left out: the exported generator's name.")
    shared = serializers.BooleanField(default=False, help_text="Share it with every user (default: private).")


class ShareSerializer(serializers.Serializer):
    shared = json_fields.BooleanField()


class GeneratorTypeSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The generator type: the value a generator's `kind` takes.")
    label = serializers.CharField()
    description = serializers.CharField()
    fine_tuning = serializers.CharField(
        help_text="What starting from a base generator (base_generator) does for this type and what it was measured "
        'to give; "" where the type cannot.'
    )
    uses_sampling_steps = serializers.BooleanField()
    default_sampling_steps = serializers.IntegerField(allow_null=True)
    settings = serializers.DictField(help_text="The advanced settings and their values in the standard preset.")
