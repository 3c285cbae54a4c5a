"""REST API for datasets: multipart upload of images and/or a zip; list; detail; delete."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from apps.core.schema import AT_LEAST_ONE_OF

from . import selectors, services


class RejectedFileSerializer(serializers.Serializer):
    file = serializers.CharField()
    reason = serializers.CharField()


class ClassCountSerializer(serializers.Serializer):
    name = serializers.CharField()
    image_count = serializers.IntegerField()


class DatasetSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    image_count = serializers.IntegerField(read_only=True)
    labelled = serializers.BooleanField(read_only=True)
    missing_images = serializers.SerializerMethodField(
        help_text="Images whose files the storage check found gone from storage (0 normally): re-upload them."
    )
    classes = serializers.SerializerMethodField(
        help_text="A labelled dataset's classes and their image counts (empty for an unlabelled one)."
    )
    created_at = serializers.DateTimeField(read_only=True)

    def get_missing_images(self, dataset) -> int:
        counted = getattr(dataset, "missing_image_count", None)
        return counted if counted is not None else dataset.images.exclude(missing_files=[]).count()

    @extend_schema_field(ClassCountSerializer(many=True))
    def get_classes(self, dataset) -> list[dict]:
        return [{"name": name, "image_count": n} for name, n in dataset.class_counts().items()]


class DatasetCreatedSerializer(DatasetSerializer):
    rejected = RejectedFileSerializer(many=True, read_only=True)
    warnings = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="What the upload may have got wrong, e.g. a zip with a folder per class uploaded without "
        "`labelled`: its images were taken as one class.",
    )


# The schema of an upload (apps/core/schema.py writes it as anyOf): images, a zip, or both.
UPLOAD_NEEDS_ONE_OF = {AT_LEAST_ONE_OF: ["images", "archive"]}


@extend_schema_serializer(extensions=UPLOAD_NEEDS_ONE_OF)
class DatasetImagesSerializer(serializers.Serializer):
    images = serializers.ListField(
        child=serializers.FileField(),
        required=False,
        help_text="Image files (repeat the field). This, `archive`, or both.",
    )
    archive = serializers.FileField(
        required=False,
        help_text="A zip of images. This, `images`, or both. In a "
        "labelled dataset: a folder per class (an ImageFolder).",
    )
    labels = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        help_text="Labelled datasets: the class of each file in `images`, in order "
        "(repeat the field). A zip's classes are its folders.",
    )


@extend_schema_serializer(extensions=UPLOAD_NEEDS_ONE_OF)
class DatasetUploadSerializer(DatasetImagesSerializer):
    name = serializers.CharField(max_length=120, validators=[RegexValidator(r"\S")], help_text="Not only spaces.")
    labelled = serializers.BooleanField(
        required=False,
        default=False,
        help_text="true: the images have classes (a zip with a folder per class, "
        "or `labels`); one generator learns them all.",
    )


class MultipartBooleanField(serializers.BooleanField):
    """A boolean form field as the schema writes it: "true" or "false" (DRF's would also take "0", "yes", ...)."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if data not in ("true", "false"):
            self.fail("invalid")
        return data == "true"


class DatasetFlagsSerializer(serializers.Serializer):
    labelled = MultipartBooleanField(default=False)


class DatasetViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    serializer_class = DatasetSerializer
    # Files come as multipart, the only media type the schema gives. A url-encoded form is read too, so that
    # one (which cannot carry files) gets the 400 that says to choose files.
    parser_classes = [MultiPartParser, FormParser]
    throttle_scope = "uploads"

    def get_queryset(self):
        return selectors.datasets_for(self.request.user)

    def get_throttles(self):
        return super().get_throttles() if self.action in ("create", "images") else []

    def handle_exception(self, exc):
        """Django's request-size guards (raised while the upload is parsed) become a 400 that says what to do."""
        return super().handle_exception(_upload_limit_error(exc) or exc)

    @extend_schema(request={"multipart/form-data": DatasetUploadSerializer}, responses={201: DatasetCreatedSerializer})
    def create(self, request):
        if errors := _text_instead_of_files(request):
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        name = request.data.get("name", "")
        if len(name) > 120:
            return Response({"name": ["Use at most 120 characters."]}, status=status.HTTP_400_BAD_REQUEST)
        flags = DatasetFlagsSerializer(data={"labelled": request.data.get("labelled", False)})
        flags.is_valid(raise_exception=True)
        dataset, rejected = services.create_dataset(
            owner=request.user,
            name=name,
            files=request.FILES.getlist("images"),
            archive=request.FILES.get("archive"),
            labelled=flags.validated_data["labelled"],
            labels=request.data.getlist("labels") if hasattr(request.data, "getlist") else None,
        )
        dataset = self.get_queryset().get(pk=dataset.pk)
        # Not saying whether the upload is labelled is allowed (one class), but a zip of class folders is told so.
        warnings = [] if "labelled" in request.data else services.class_folder_warnings(dataset)
        body = {**DatasetSerializer(dataset).data, "rejected": rejected, "warnings": warnings}
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.delete_dataset(dataset=instance)

    @extend_schema(request={"multipart/form-data": DatasetImagesSerializer}, responses={200: DatasetCreatedSerializer})
    @action(detail=True, methods=["post"])
    def images(self, request, pk=None):
        """Add images (and/or a zip) to a dataset; the web page uploads in batches this way."""
        dataset = self.get_object()
        if errors := _text_instead_of_files(request):
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        files, archive = request.FILES.getlist("images"), request.FILES.get("archive")
        if not files and archive is None:
            return Response(
                {"images": ["Choose image files (PNG, JPEG or WebP) or a zip of them to upload."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        labels = request.data.getlist("labels") if hasattr(request.data, "getlist") else None
        rejected = services.add_images(dataset=dataset, files=files, archive=archive, labels=labels)
        dataset = self.get_queryset().get(pk=dataset.pk)
        return Response({**DatasetSerializer(dataset).data, "rejected": rejected, "warnings": []})


FILE_FIELDS = {"images": "the images", "archive": "the zip"}


def _text_instead_of_files(request) -> dict[str, list[str]]:
    """`images` or `archive` sent as text form fields (no filename): the schema says files, so this is refused
    rather than read as if they were left out."""
    return {
        field: [f"Send {what} as files (multipart parts with a filename), not as text."]
        for field, what in FILE_FIELDS.items()
        if field in request.POST
    }


def _upload_limit_error(exc) -> ValidationError | None:
    if isinstance(exc, TooManyFilesSent):
        cap = settings.SYNTHGEN_MAX_FILES_PER_REQUEST
        return ValidationError(
            {
                "images": [
                    f"Too many files in one upload: at most {cap} images (plus one zip) per request - "
                    "upload in parts or as a zip."
                ]
            }
        )
    if isinstance(exc, (TooManyFieldsSent, RequestDataTooBig)):
        return ValidationError(
            {"non_field_errors": [f"The upload's form data is too large ({exc}) - send the images as files."]}
        )
    return None
