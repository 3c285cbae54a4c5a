from django.apps import AppConfig


class GeneratorsConfig(AppConfig):
    name = "apps.generators"
    label = "generators"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the app's Celery tasks in every process, not only in workers: services queue them by their names,
        # and eager mode (CELERY_TASK_ALWAYS_EAGER, the tests) runs only a task this process has registered.
        from . import tasks  # noqa: F401  (tasks.py imports services and models: only once the apps are loaded)
