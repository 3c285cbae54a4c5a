"""The Celery app: queues, routes and broker settings come from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synthgen.settings.dev")

app = Celery("synthgen")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
