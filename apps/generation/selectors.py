"""Reads of generation jobs, scoped to their owner."""
from django.db.models import QuerySet

from .models import GenerationJob


def jobs_for(user) -> QuerySet[GenerationJob]:
    return GenerationJob.objects.filter(owner=user).select_related("generator")
