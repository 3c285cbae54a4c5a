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
    # What `manage.py check_storage --repair` found gone from a finished job's files: "zip", "images".
    missing_files = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job {self.pk}: {self.count} from {self.generator_id} ({self.status})"

    @property
    def lost_message(self) -> str:
        """What of its output is gone from storage and what to do ("" when nothing is)."""
        if not self.missing_files:
            return ""
        lost = " and ".join("its zip" if what == "zip" else "its images" for what in self.missing_files)
        return (
            f"This job's output is no longer in the storage ({lost}; found by the storage check). "
            "Generate the images again: the same seed gives the same images."
        )
