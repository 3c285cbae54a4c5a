"""Generators (the shared registry users pick from) and the training runs that make them."""

from django.conf import settings
from django.db import models

from apps.core.models import TimeStamped

from .stages import STAGE_ORDER

# What a generator's lost files are called on its pages (the names its type saves: apps.ml.engine.base).
MISSING_WORDS = {"weights.safetensors": "weights", "config.json": "config"}


class Generator(TimeStamped):
    class Status(models.TextChoices):
        QUEUED = "queued"
        TRAINING = "training"
        READY = "ready"
        FAILED = "failed"
        CANCELLED = "cancelled"
        BROKEN = "broken"  # was ready; its files are gone from storage (missing_files; manage.py check_storage)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generators")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=40, db_index=True)  # the generator type (apps.ml.engine.registry)
    resolution = models.PositiveSmallIntegerField()
    channels = models.PositiveSmallIntegerField(default=3)
    dataset = models.ForeignKey(
        "datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="generators"
    )
    augment = models.BooleanField(default=False)
    preset = models.CharField(max_length=20)
    options = models.JSONField(default=dict, blank=True)  # the user's advanced settings, over the preset
    config = models.JSONField(default=dict, blank=True)  # the full config training used
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    shared = models.BooleanField(default=True, help_text="Shared generators can be used by every user.")
    files_dir = models.CharField(
        max_length=255, blank=True
    )  # its folder in storage (apps/core/storage.py); weights + config
    sample_grid = models.CharField(max_length=255, blank=True)  # name in storage
    quality = models.JSONField(null=True, blank=True)
    # A conditional generator's classes in label order, with the real photos of each it learned from:
    # [{"name": ..., "image_count": ...}]; empty for a one-class generator.
    classes = models.JSONField(default=list, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    # Which way its training photos face (apps.ml.engine.orientation), measured by the prepare stage: what the
    # augmentation, the recipe and the report's classifier followed.
    orientation = models.JSONField(default=dict, blank=True)
    # Lineage: the generator this one was fine-tuned from (apps.generators.transfer). Its weights are the child's
    # own, so deleting the base only clears the link; ``base_name`` keeps saying what it was fine-tuned from
    # (also for an imported generator whose base lives on another installation).
    base_generator = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="fine_tuned"
    )
    base_name = models.CharField(max_length=120, blank=True)
    # The files of its folder that `manage.py check_storage --repair` found gone (e.g. ["weights.safetensors"]):
    # such a generator is "broken" and cannot generate until they are back (the next check makes it ready again).
    missing_files = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.resolution}px)"

    @property
    def status_words(self) -> str:
        """The status as the pages say it: "ready", "training", ..., "broken: weights missing"."""
        return self.broken_reason or self.status

    @property
    def lost_message(self) -> str:
        """For a broken generator: what is lost and what to do ("" otherwise)."""
        if self.status != self.Status.BROKEN:
            return ""
        return (
            f"This generator is {self.broken_reason}: its files are no longer in the storage (found by the storage "
            "check), so it cannot generate or be exported. Train it again, or import an export of it."
        )

    @property
    def broken_reason(self) -> str:
        """ "broken: weights missing" for a broken generator, "" otherwise."""
        if self.status != self.Status.BROKEN:
            return ""
        lost = [MISSING_WORDS.get(name, name) for name in self.missing_files] or ["files"]
        return f"broken: {' and '.join(lost)} missing"

    @property
    def lineage(self) -> str:
        """ "fine-tuned from <name>", or "" for a generator trained from scratch."""
        return f"fine-tuned from {self.base_name}" if self.base_name else ""

    @property
    def is_ready(self) -> bool:
        return self.status == self.Status.READY


class TrainingRun(TimeStamped):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    STAGES = STAGE_ORDER

    generator = models.ForeignKey(Generator, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=20, default="queued")
    completed_stages = models.JSONField(default=list, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    losses = models.JSONField(default=list, blank=True)  # [{"step": n, "d": x, "g": y} or {"step": n, "loss": x}]
    image_count = models.PositiveIntegerField(default=0)  # images the model trains on (after augmentation)
    device = models.CharField(max_length=20, blank=True)
    train_started_at = models.DateTimeField(null=True, blank=True)
    resumed_step = models.PositiveIntegerField(default=0)  # step the current training attempt started from
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=255, blank=True)  # "host:pid:token": the worker process running the stage
    latest_grid = models.CharField(max_length=255, blank=True)  # name in storage: newest sample grid
    warnings = models.JSONField(default=list, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)  # starts of the current stage (worker deaths)
    requeued_at = models.DateTimeField(null=True, blank=True)  # last time the stale-run sweeper re-queued it
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # The training time expected when training started (apps.generators.estimates), where it came from, and
    # the training time it took (the trainer's wall time over every attempt): the run page compares them.
    estimated_seconds = models.FloatField(null=True, blank=True)
    estimate_source = models.CharField(max_length=200, blank=True)
    train_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.generator.name}: {self.status}/{self.stage}"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)


class StepCost(models.Model):
    """Seconds per training step of one model shape on one kind of device, measured by a worker that trains
    (apps.generators.step_costs.measure_step_cost): what the wizard's time estimates rest on before any run."""

    kind = models.CharField(max_length=40)
    resolution = models.PositiveSmallIntegerField()
    channels = models.PositiveSmallIntegerField()
    device = models.CharField(max_length=20)  # "cpu" or "cuda": the device class the recipe was built for
    shape = models.CharField(max_length=40)  # step_costs.shape_key of the config: what sets a step's cost
    seconds_per_step = models.FloatField()
    steps = models.PositiveIntegerField()  # steps timed
    host = models.CharField(max_length=255)
    device_name = models.CharField(max_length=120, blank=True)  # e.g. "NVIDIA H200", or the CPU's threads
    measured_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "resolution", "channels", "device", "shape"], name="one_step_cost_per_shape"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.resolution}px/{self.channels} on {self.device}: {self.seconds_per_step:.4f} s/step"


class WorkerPresence(models.Model):
    """A Celery worker process that is (or was) up: it writes ``seen_at`` every WORKER_BEAT_SECONDS while it runs
    (apps.generators.presence), and ``stopped_at`` when it stops. The wizard reads it to say whether any worker
    that trains is up, and on which device."""

    holder = models.CharField(max_length=255, unique=True)  # runs.lease_holder(): "host:pid:token"
    host = models.CharField(max_length=255)
    queues = models.JSONField(default=list)
    device = models.CharField(max_length=20)  # "cpu" or "cuda"
    device_name = models.CharField(max_length=120, blank=True)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"worker {self.holder} ({self.device}, {','.join(self.queues)})"
