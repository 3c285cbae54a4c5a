"""Reads of datasets, always scoped to their owner."""

from django.db.models import Count, Q, QuerySet

from .models import Dataset


def is_signed_in(user) -> bool:
    """True for a real, logged-in user; False for None and AnonymousUser (who see nothing)."""
    return bool(user is not None and user.is_authenticated)


def datasets_for(user) -> QuerySet[Dataset]:
    """The user's own datasets with their image counts, newest first; none for anonymous users."""
    queryset = Dataset.objects.annotate(
        image_count=Count("images"), missing_image_count=Count("images", filter=~Q(images__missing_files=[]))
    ).order_by("-created_at", "-id")
    return queryset.filter(owner=user) if is_signed_in(user) else queryset.none()
