"""REST API for generators (the registry) and their training runs. Starting generation: apps.generation.api.
The serializers are serializers.py's."""

from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from apps.core.views import serve_media_file
from apps.ml.engine import registry

from . import portable, selectors, services
from .models import Generator
from .serializers import (
    GeneratorCreateSerializer,
    GeneratorFilterSerializer,
    GeneratorSerializer,
    GeneratorTypeSerializer,
    ImportSerializer,
    RunSerializer,
    ShareSerializer,
)


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
            OpenApiParameter("kind", str, description="Only generators of this generator type, e.g. dcgan."),
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
        generator = self.get_object()
        return serve_media_file(generator.sample_grid)


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
            "fine_tuning": generator_type.fine_tuning,
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
