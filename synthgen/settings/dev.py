"""The embedded default: SQLite, local files, a broker with no server. For one machine."""

import os

from .base import *  # noqa: F401,F403
from .base import VAR_DIR, env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
# A local-only key, made once per checkout and kept in var/ (never committed).
if not SECRET_KEY:  # noqa: F405
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        from django.core.management.utils import get_random_secret_key

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(get_random_secret_key())
    SECRET_KEY = _key_file.read_text().strip()
os.makedirs(VAR_DIR, exist_ok=True)
