"""REST API for generators (the registry) and their training runs. Starting generation: apps.generation.api."""

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from apps.core import fields as json_fields
from apps.datasets.api import ClassCountSerializer
from apps.datasets.selectors import datasets_for
from apps.ml.engine import registry
from apps.ml.engine.base import PRESETS, RESOLUTIONS
from apps.ml.engine.orientation import describe as describe_orientation

from . import estimates, portable, selectors, services
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
            "created_at",
        ]

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
    kind = json_fields.ChoiceField(choices=[])
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
            "channels; training starts from its weights with the fine-tuning recipe (a third of the preset's steps, "
            "a lower learning rate) unless options set those. Another one: 400 naming the mismatch and listing the "
            "generators that fit. Left out (or null): train from scratch."
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


class GeneratorViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    serializer_class = GeneratorSerializer
    parser_classes = [JSONParser]  # bodies are JSON (other media types: 415)
    throttle_scope = "generation"

    def get_queryset(self):
        queryset = selectors.generators_for(self.request.user)
        if self.action != "list":
            return queryset
        filters = GeneratorFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return queryset.filter(**{field: value for field, value in filters.validated_data.items() if value})

    def get_throttles(self):
        return super().get_throttles() if self.action in ("create", "import_export") else []

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, description="Only generators of this type (a registry key, e.g. dcgan)."),
            OpenApiParameter(
                "status",
                str,
                enum=Generator.Status.values,
                description="Only generators in this state (another value: 400).",
            ),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def _own(self, generator: Generator) -> Generator:
        if generator.owner_id != self.request.user.pk:
            raise PermissionDenied("Only the owner can change this generator.")
        return generator

    @extend_schema(request=GeneratorCreateSerializer, responses={202: GeneratorSerializer})
    def create(self, request):
        form = GeneratorCreateSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        generator = services.start_training(
            owner=request.user,
            name=data["name"],
            dataset=data["dataset"],
            kind=data["kind"],
            resolution=int(data["resolution"]) if data.get("resolution") else None,
            augment=data["augment"],
            preset=data.get("preset") or None,
            shared=data["shared"],
            options=data.get("options") or None,
            base_generator=data.get("base_generator"),
        )
        return Response(
            GeneratorSerializer(generator, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )

    def perform_destroy(self, instance):
        services.delete_generator(generator=self._own(instance))

    @extend_schema(request=ShareSerializer, responses=GeneratorSerializer)
    @action(detail=True, methods=["post"])
    def share(self, request, pk=None):
        generator = self._own(self.get_object())
        form = ShareSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.set_shared(generator=generator, shared=form.validated_data["shared"])
        return Response(GeneratorSerializer(generator, context={"request": request}).data)

    @extend_schema(responses={(200, "application/zip"): bytes})
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        """One file with the generator's weights (safetensors), config, type and architecture version, classes,
        quality report and lineage, for POST /api/generators/import/ on this or another installation."""
        generator = self.get_object()
        return FileResponse(
            portable.export_generator(generator=generator),
            as_attachment=True,
            filename=portable.export_filename(generator),
            content_type="application/zip",
        )

    @extend_schema(request={"multipart/form-data": ImportSerializer}, responses={201: GeneratorSerializer})
    @action(detail=False, methods=["post"], url_path="import", url_name="import", parser_classes=[MultiPartParser])
    def import_export(self, request):
        """Turn an export file into a ready generator of yours; a damaged, changed or foreign file, an unknown type
        or a newer architecture version is refused (400 under `file`) and nothing is created."""
        form = ImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        generator = portable.import_generator(
            owner=request.user, file=data["file"], name=data.get("name"), shared=data["shared"]
        )
        return Response(
            GeneratorSerializer(generator, context={"request": request}).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(responses={(200, "image/png"): bytes})
    @action(detail=True, methods=["get"], url_path="sample-grid")
    def sample_grid(self, request, pk=None):
        from apps.core.views import serve_media_file

        generator = self.get_object()
        return serve_media_file(generator.sample_grid)


class GeneratorTypeSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    description = serializers.CharField()
    uses_sampling_steps = serializers.BooleanField()
    default_sampling_steps = serializers.IntegerField(allow_null=True)
    settings = serializers.DictField(help_text="The advanced settings and their values in the standard preset.")


class GeneratorTypeViewSet(viewsets.ViewSet):
    """The generator types in the registry: what `kind` accepts, and each type's advanced settings."""

    serializer_class = GeneratorTypeSerializer
    lookup_value_regex = "[a-z0-9_-]+"

    @staticmethod
    def _describe(key: str, generator_type) -> dict:
        return {
            "key": key,
            "label": generator_type.label,
            "description": generator_type.description,
            "uses_sampling_steps": generator_type.uses_sampling_steps,
            "default_sampling_steps": generator_type.default_sampling_steps,
            "settings": services.tunable_settings(key),
        }

    @extend_schema(responses=GeneratorTypeSerializer(many=True))
    def list(self, request):
        return Response([self._describe(key, cls) for key, cls in registry.all_types().items()])

    @extend_schema(responses=GeneratorTypeSerializer)
    def retrieve(self, request, pk=None):
        generator_type = registry.all_types().get(pk)
        if generator_type is None:
            return Response({"detail": f"No generator type '{pk}'."}, status=status.HTTP_404_NOT_FOUND)
        return Response(self._describe(pk, generator_type))


class RunViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = RunSerializer

    def get_queryset(self):
        return selectors.runs_for(self.request.user)

    @extend_schema(request=None, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = services.cancel_run(run=self.get_object())
        return Response(RunSerializer(run, context={"request": request}).data)
