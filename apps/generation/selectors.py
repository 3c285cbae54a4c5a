"""Reads of generation jobs, scoped to their owner."""

from django.db.models import QuerySet

from apps.datasets.selectors import is_signed_in

from .models import GenerationJob


def jobs_for(user) -> QuerySet[GenerationJob]:
    """The user's own generation jobs; none for anonymous users."""
    if not is_signed_in(user):
        return GenerationJob.objects.none()
    return GenerationJob.objects.filter(owner=user).select_related("generator")
