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
from apps.core.views import serve_media_file
from apps.generators.selectors import generators_for
from apps.ml.engine.base import MAX_GUIDANCE, MAX_SAMPLING_STEPS, MIN_GUIDANCE

from . import selectors, services
from .models import GenerationJob


class JobSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "generator",
            "status",
            "count",
            "counts",
            "guidance",
            "produced",
            "dropped",
            "seed",
            "steps",
            "filter_images",
            "download_url",
            "error",
            "missing_files",
            "created_at",
            "finished_at",
        ]

    def get_download_url(self, job) -> str | None:
        if job.status != GenerationJob.Status.DONE or "zip" in job.missing_files:
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

        job = self.get_object()
        if "zip" in job.missing_files:
            return Response({"detail": job.lost_message}, status=status.HTTP_410_GONE)
        return serve_media_file(job.archive, as_attachment=True)


class GenerateSerializer(serializers.Serializer):
    count = json_fields.IntegerField(min_value=1)  # max_value: settings.SYNTHGEN_MAX_GENERATION_COUNT (__init__)
    seed = json_fields.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**63 - 1)
    steps = json_fields.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_SAMPLING_STEPS)
    filter = json_fields.BooleanField(
        default=True, help_text="Drop noisy/blank images and near-copies of training images."
    )
    counts = serializers.DictField(
        child=json_fields.IntegerField(min_value=0),
        required=False,
        help_text=('Conditional generators: images per class, e.g. {"sandal": 850} (leave count out).'),
    )
    balance_to = json_fields.IntegerField(
        required=False,
        min_value=1,
        help_text=(
            "Conditional generators: fill every class up to this many images, counting its real photos "
            "(a class that has as many already gets none; leave count out)."
        ),
    )
    guidance = json_fields.FloatField(
        required=False,
        min_value=MIN_GUIDANCE,
        max_value=MAX_GUIDANCE,
        help_text=(
            "Conditional generators: classifier-free guidance scale (1: none; higher: more typical of the class, "
            "less varied). Left out: the generator's default."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The cap is a setting, read at request time (and by the schema, the web form and the service).
        self.fields["count"] = json_fields.IntegerField(
            min_value=1,
            max_value=settings.SYNTHGEN_MAX_GENERATION_COUNT,
            required=False,
            help_text="How many images. Required, except with counts or balance_to for a conditional generator "
            "(with class: how many of that class; alone: spread evenly over its classes).",
        )
        self.fields["class"] = json_fields.CharField(
            required=False, help_text=("Conditional generators: generate only this class (with count).")
        )


class GenerateView(APIView):
    """Start a generation job from a ready generator (yours, or one shared with every user)."""

    parser_classes = [JSONParser]  # bodies are JSON (other media types: 415)
    throttle_scope = "generation"

    @extend_schema(
        operation_id="generators_generate_create",
        request=GenerateSerializer,
        responses={202: JobSerializer},
        tags=["generators"],
    )
    def post(self, request, pk: int):
        generator = get_object_or_404(generators_for(request.user), pk=pk)
        form = GenerateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        job = services.start_generation(
            owner=request.user,
            generator=generator,
            count=data.get("count"),
            seed=data.get("seed"),
            steps=data.get("steps"),
            filter_images=data["filter"],
            counts=data.get("counts"),
            balance_to=data.get("balance_to"),
            class_name=data.get("class"),
            guidance=data.get("guidance"),
        )
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
