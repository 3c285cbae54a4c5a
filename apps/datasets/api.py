"""REST API for datasets: multipart upload of images and/or a zip; list; detail; delete."""
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
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


class DatasetUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    images = serializers.ListField(child=serializers.FileField(), required=False, help_text="Image files (repeat the field).")
    archive = serializers.FileField(required=False, help_text="A zip of images.")


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]
    throttle_scope = "uploads"

    def get_queryset(self):
        return selectors.datasets_for(self.request.user)

    def get_throttles(self):
        return super().get_throttles() if self.action == "create" else []

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
