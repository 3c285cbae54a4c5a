"""A generation job: N images from one generator, delivered as PNGs and one zip."""

from django.conf import settings
from django.db import models

from apps.core.models import TimeStamped


class GenerationJob(TimeStamped):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generation_jobs")
    generator = models.ForeignKey("generators.Generator", on_delete=models.CASCADE, related_name="jobs")
    count = models.PositiveIntegerField()
    seed = models.BigIntegerField()
    steps = models.PositiveIntegerField(null=True, blank=True)  # sampling steps, for diffusion types
    filter_images = models.BooleanField(default=True)
    # A conditional generator's job: images per class, in the generator's class order (empty: one class).
    counts = models.JSONField(default=dict, blank=True)
    guidance = models.FloatField(null=True, blank=True)  # classifier-free guidance scale (conditional generators)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    produced = models.PositiveIntegerField(default=0)
    dropped = models.PositiveIntegerField(default=0)
    output_dir = models.CharField(
        max_length=255, blank=True
    )  # its folder in storage (apps/core/storage.py): the gallery's PNGs + manifest
    archive = models.CharField(max_length=255, blank=True)  # name in storage: the zip
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job {self.pk}: {self.count} from {self.generator_id} ({self.status})"
