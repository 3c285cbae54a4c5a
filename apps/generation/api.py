"""REST API for generation: starting a job from a generator, the job's status and its zip download."""
from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import fields as json_fields
from apps.generators.selectors import generators_for
from apps.ml.base import MAX_SAMPLING_STEPS

from . import selectors, services
from .models import GenerationJob


class JobSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = GenerationJob
        fields = ["id", "generator", "status", "count", "produced", "dropped", "seed", "steps", "filter_images",
                  "download_url", "error", "created_at", "finished_at"]

    def get_download_url(self, job) -> str | None:
        if job.status != GenerationJob.Status.DONE:
            return None
        return self.context["request"].build_absolute_uri(reverse("api:job-download", args=[job.pk]))


class JobViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer

    def get_queryset(self):
        return selectors.jobs_for(self.request.user)

    def perform_destroy(self, instance):
        services.delete_job(job=instance)

    @extend_schema(responses={(200, "application/zip"): bytes})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        from apps.core.views import serve_media_file

        job = self.get_object()
        return serve_media_file(job.archive, as_attachment=True)


class GenerateSerializer(serializers.Serializer):
    count = json_fields.IntegerField(min_value=1)  # max_value: settings.SYNTHGEN_MAX_GENERATION_COUNT (__init__)
    seed = json_fields.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**63 - 1)
    steps = json_fields.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_SAMPLING_STEPS)
    filter = json_fields.BooleanField(default=True, help_text="Drop noisy/blank images and near-copies of training images.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The cap is a setting, read at request time (and by the schema, the web form and the service).
        self.fields["count"] = json_fields.IntegerField(min_value=1, max_value=settings.SYNTHGEN_MAX_GENERATION_COUNT)


class GenerateView(APIView):
    """Start a generation job from a ready generator (yours, or one shared with every user)."""

    parser_classes = [JSONParser]  # bodies are JSON (other media types: 415)
    throttle_scope = "generation"

    @extend_schema(operation_id="generators_generate_create", request=GenerateSerializer,
                   responses={202: JobSerializer}, tags=["generators"])
    def post(self, request, pk: int):
        generator = get_object_or_404(generators_for(request.user), pk=pk)
        form = GenerateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        job = services.start_generation(
            owner=request.user,
            generator=generator,
            count=data["count"],
            seed=data.get("seed"),
            steps=data.get("steps"),
            filter_images=data["filter"],
        )
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
