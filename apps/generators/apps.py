from django.apps import AppConfig


class GeneratorsConfig(AppConfig):
    name = "apps.generators"
    label = "generators"
    default_auto_field = "django.db.models.BigAutoField"
