"""Settings for the test suite: fast hashing, media and scratch in a temp folder."""

import os
import tempfile
from pathlib import Path

from .base import *  # noqa: F401,F403
from .base import env_bool

SECRET_KEY = "test-only-key-not-secret"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Not created here (each test gets tmp_path folders from tests/conftest.py); a worker process gets its folders
# through SYNTHGEN_MEDIA_ROOT / SYNTHGEN_WORK_DIR.
_tmp = Path(os.environ.get("SYNTHGEN_TEST_TMP", Path(tempfile.gettempdir()) / f"synthgen-test-{os.getpid()}"))
MEDIA_ROOT = Path(os.environ.get("SYNTHGEN_MEDIA_ROOT", _tmp / "media"))
SYNTHGEN_WORK_DIR = Path(os.environ.get("SYNTHGEN_WORK_DIR", _tmp / "work"))
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", True)
# The tests' workers do not spend their CPU timing step costs
# (tests/generators/test_estimates.py measures what it needs).
SYNTHGEN_MEASURE_STEP_COSTS = env_bool("SYNTHGEN_MEASURE_STEP_COSTS", False)
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"uploads": "10000/min", "generation": "10000/min"}}  # noqa: F405
