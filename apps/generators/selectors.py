"""Reads of generators and runs, scoped to what a user may see."""

from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.datasets.selectors import is_signed_in

from .models import Generator, TrainingRun


def generators_for(user) -> QuerySet[Generator]:
    """The user's own generators, plus every ready generator that another user shares; none for anonymous users."""
    if not is_signed_in(user):
        return Generator.objects.none()
    return Generator.objects.filter(Q(owner=user) | Q(shared=True, status=Generator.Status.READY)).select_related(
        "owner", "dataset"
    )


def runs_for(user) -> QuerySet[TrainingRun]:
    """Training runs of the user's own generators (runs are never shared); none for anonymous users."""
    if not is_signed_in(user):
        return TrainingRun.objects.none()
    return TrainingRun.objects.filter(generator__owner=user).select_related("generator")


def latest_run(generator: Generator) -> TrainingRun | None:
    return generator.runs.order_by("-created_at").first()


def eta_seconds(run: TrainingRun) -> float | None:
    """Seconds left in training, from the step rate since this training attempt started."""
    if run is None or run.stage != "train" or not run.train_started_at or run.total_steps == 0:
        return None
    done = run.step - run.resumed_step
    if done <= 0:
        return None
    elapsed = (timezone.now() - run.train_started_at).total_seconds()
    return round(elapsed / done * max(run.total_steps - run.step, 0), 1)
