from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "apps.datasets"
    label = "datasets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.conf import settings

        from .imaging import cap_pillow_pixels

        cap_pillow_pixels(settings.SYNTHGEN_MAX_IMAGE_PIXELS)  # Pillow's process-wide decompression-bomb cap
