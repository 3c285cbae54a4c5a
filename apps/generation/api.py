"""REST API for generation jobs: status and the zip download."""
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action

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
