"""The beat's daily storage check (CELERY_BEAT_SCHEDULE "check-storage"): it reports, it never repairs."""

import logging

from celery import shared_task

from .models import StorageCheck
from .presentation import summary
from .services import check_storage

log = logging.getLogger(__name__)

CHECK_TASK = "upkeep.check_storage"


@shared_task(name=CHECK_TASK)
def scheduled_check() -> None:
    outcome = check_storage(repair_it=False, trigger=StorageCheck.Trigger.SCHEDULE)
    if outcome.findings is None:
        log.error("storage check could not finish: %s", outcome.record.error)
    elif outcome.findings.clean:
        log.info("storage check: %s", summary(outcome.findings))
    else:
        log.warning("storage check: %s (python manage.py check_storage lists them)", summary(outcome.findings))
