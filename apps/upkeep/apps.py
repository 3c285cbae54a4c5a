from django.apps import AppConfig


class UpkeepConfig(AppConfig):
    """Keeping the database and the file storage in agreement: the storage check (check_storage)."""

    name = "apps.upkeep"
    label = "upkeep"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the daily check's Celery task in every process (the beat sends it by name).
        from . import tasks  # noqa: F401
