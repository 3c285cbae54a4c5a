from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "apps.generation"
    label = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the app's Celery task in every process, not only in workers: services queue it by its name,
        # and eager mode (CELERY_TASK_ALWAYS_EAGER, the tests) runs only a task this process has registered.
        from . import tasks  # noqa: F401  (tasks.py imports services and models: only once the apps are loaded)
