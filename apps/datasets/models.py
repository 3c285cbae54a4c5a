"""A dataset is a named set of one user's images, each stored once."""

from django.conf import settings
from django.db import models

from apps.core.models import TimeStamped
from apps.core.storage import dataset_original_name, dataset_working_name


def _original_path(instance: "DatasetImage", filename: str) -> str:
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return dataset_original_name(instance.dataset_id, extension)


def _working_path(instance: "DatasetImage", filename: str) -> str:
    return dataset_working_name(instance.dataset_id)


class Dataset(TimeStamped):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=120)
    # Labelled: every image has a class (an ImageFolder upload); one conditional generator learns them all.
    labelled = models.BooleanField(default=False)
    # Which way the photos face (apps.ml.engine.orientation), with the "signature" of the images it was measured
    # on; measured again when they change (apps.datasets.orientation).
    orientation = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def channels(self) -> int:
        """1 when every image is grayscale, else 3."""
        return 3 if self.images.exclude(mode="L").exists() else 1

    def stored_images(self) -> models.QuerySet["DatasetImage"]:
        """Its images whose files are in storage: all but those the storage check found gone (missing_files).
        Everything that reads the images' files reads these."""
        return self.images.filter(missing_files=[])

    def class_counts(self) -> dict[str, int]:
        """Images per class, by class name (empty for an unlabelled dataset)."""
        if not self.labelled:
            return {}
        rows = self.images.values("label").annotate(n=models.Count("id")).order_by("label")
        return {row["label"]: row["n"] for row in rows}


class DatasetImage(TimeStamped):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    original = models.FileField(upload_to=_original_path, max_length=255)  # the bytes as uploaded
    working = models.FileField(upload_to=_working_path, max_length=255)  # normalised PNG, shorter side <= 256
    original_name = models.CharField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    mode = models.CharField(max_length=4)  # "L" or "RGB" after normalisation
    format = models.CharField(max_length=10)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    label = models.CharField(max_length=64, blank=True, default="")  # the class in a labelled dataset
    # What `manage.py check_storage --repair` found gone from storage: "original", "working".
    missing_files = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="unique_image_per_dataset")]

    def __str__(self) -> str:
        return self.original_name
