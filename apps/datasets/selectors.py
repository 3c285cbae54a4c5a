"""Reads of datasets, always scoped to their owner."""
from django.db.models import Count, QuerySet

from .models import Dataset


def datasets_for(user) -> QuerySet[Dataset]:
    return Dataset.objects.filter(owner=user).annotate(image_count=Count("images")).order_by("-created_at", "-id")
