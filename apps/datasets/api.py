"""REST API for datasets: multipart upload of images and/or a zip; list; detail; delete."""
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from . import selectors, services


class RejectedFileSerializer(serializers.Serializer):
    file = serializers.CharField()
    reason = serializers.CharField()


class DatasetSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    image_count = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class DatasetCreatedSerializer(DatasetSerializer):
    rejected = RejectedFileSerializer(many=True, read_only=True)


class DatasetImagesSerializer(serializers.Serializer):
    images = serializers.ListField(child=serializers.FileField(), required=False, help_text="Image files (repeat the field).")
    archive = serializers.FileField(required=False, help_text="A zip of images.")


class DatasetUploadSerializer(DatasetImagesSerializer):
    name = serializers.CharField(max_length=120)


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]
    throttle_scope = "uploads"

    def get_queryset(self):
        return selectors.datasets_for(self.request.user)

    def get_throttles(self):
        return super().get_throttles() if self.action in ("create", "images") else []

    def handle_exception(self, exc):
        """Django's request-size guards (raised while the upload is parsed) become a 400 that says what to do."""
        return super().handle_exception(_upload_limit_error(exc) or exc)

    @extend_schema(request=DatasetUploadSerializer, responses={201: DatasetCreatedSerializer})
    def create(self, request):
        name = request.data.get("name", "")
        if len(name) > 120:
            return Response({"name": ["Use at most 120 characters."]}, status=status.HTTP_400_BAD_REQUEST)
        dataset, rejected = services.create_dataset(
            owner=request.user,
            name=name,
            files=request.FILES.getlist("images"),
            archive=request.FILES.get("archive"),
        )
        dataset = self.get_queryset().get(pk=dataset.pk)
        body = {**DatasetSerializer(dataset).data, "rejected": rejected}
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.delete_dataset(dataset=instance)

    @extend_schema(request=DatasetImagesSerializer, responses={200: DatasetCreatedSerializer})
    @action(detail=True, methods=["post"])
    def images(self, request, pk=None):
        """Add images (and/or a zip) to a dataset; the web page uploads in batches this way."""
        dataset = self.get_object()
        files, archive = request.FILES.getlist("images"), request.FILES.get("archive")
        if not files and archive is None:
            return Response({"images": ["Choose image files (PNG, JPEG or WebP) or a zip of them to upload."]},
                            status=status.HTTP_400_BAD_REQUEST)
        rejected = services.add_images(dataset=dataset, files=files, archive=archive)
        dataset = self.get_queryset().get(pk=dataset.pk)
        return Response({**DatasetSerializer(dataset).data, "rejected": rejected})


def _upload_limit_error(exc) -> ValidationError | None:
    if isinstance(exc, TooManyFilesSent):
        cap = settings.SYNTHGEN_MAX_FILES_PER_REQUEST
        return ValidationError(
            {"images": [f"Too many files in one upload: at most {cap} images (plus one zip) per request - "
                        "upload in parts or as a zip."]}
        )
    if isinstance(exc, (TooManyFieldsSent, RequestDataTooBig)):
        return ValidationError({"non_field_errors": [f"The upload's form data is too large ({exc}) - send the images as files."]})
    return None
