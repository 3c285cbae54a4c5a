"""What each storage check found (apps.upkeep.services.check_storage): the admin shows the newest."""

from django.db import models


class StorageCheck(models.Model):
    class Trigger(models.TextChoices):
        COMMAND = "command"  # python manage.py check_storage
        SCHEDULE = "schedule"  # the beat's daily run

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.COMMAND)
    storage = models.CharField(max_length=255)  # the storage in words (apps.core.storage.describe)
    repair = models.BooleanField(default=False)
    clean = models.BooleanField(null=True)  # None: the check could not finish (see error)
    missing = models.PositiveIntegerField(default=0)  # rows whose files are gone
    orphans = models.PositiveIntegerField(default=0)  # stored files no row names
    orphan_bytes = models.PositiveBigIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)  # orphans --repair removed
    marked = models.PositiveIntegerField(default=0)  # rows --repair marked as missing files (or cleared)
    error = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True)  # what --json prints

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"storage check {self.started_at:%Y-%m-%d %H:%M}: {self.summary}"

    @property
    def summary(self) -> str:
        if self.clean is None:
            return f"could not finish: {self.error}"
        if self.clean:
            return "clean"
        if self.error:  # found problems, and refused to repair them
            return f"{self.missing} rows with missing files, {self.orphans} orphans; {self.error}"
        return f"{self.missing} rows with missing files, {self.orphans} orphans ({self.orphan_bytes:,} bytes)"
