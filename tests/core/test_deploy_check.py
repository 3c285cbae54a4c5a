"""Production settings (issue #6): ``manage.py check --deploy`` reports nothing, and secrets and
hosts come only from the environment. Each check runs manage.py in a fresh process, as a deploy would."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = "synthgen.settings.production"


def production_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """The process environment of a production deploy; an override of None removes the variable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "SYNTHGEN_"))}
    env.update(
        DJANGO_SETTINGS_MODULE=PRODUCTION,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="synthgen.example.org,www.synthgen.example.org",
        SYNTHGEN_VAR_DIR=str(tmp_path / "var"),
        SYNTHGEN_MEDIA_ROOT=str(tmp_path / "media"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


SHOW_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({name: getattr(s, name) for name in (
    "DEBUG", "ALLOWED_HOSTS", "SECRET_KEY", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS")}))
"""


def test_check_deploy_reports_no_issues(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_production_takes_secrets_and_hosts_from_the_environment_only(tmp_path):
    env = production_env(tmp_path, DJANGO_DEBUG="1")  # DEBUG cannot be switched on in production
    result = run(["-c", SHOW_SETTINGS], env)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["DEBUG"] is False
    assert values["SECRET_KEY"] == env["DJANGO_SECRET_KEY"]
    assert values["ALLOWED_HOSTS"] == ["synthgen.example.org", "www.synthgen.example.org"]
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"] and values["SECURE_SSL_REDIRECT"]
    assert values["SECURE_HSTS_SECONDS"] >= 31_536_000 and values["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] and values["X_FRAME_OPTIONS"] == "DENY"


@pytest.mark.parametrize("secret", [None, "", "too-short-to-be-a-real-secret"], ids=["missing", "empty", "short"])
def test_production_refuses_to_start_without_a_real_secret_key(secret, tmp_path):
    result = run(["manage.py", "check"], production_env(tmp_path, DJANGO_SECRET_KEY=secret))
    assert result.returncode != 0
    assert "Set DJANGO_SECRET_KEY to a random string of 50+ characters" in result.stderr


def test_no_secret_is_written_in_the_settings_files():
    """The only secret-looking value in the settings is the test suite's throwaway key."""
    for path in (ROOT / "synthgen" / "settings").glob("*.py"):
        text = path.read_text()
        assert 'SECRET_KEY = "' not in text or path.name == "test.py", path
        assert "django-insecure" not in text, path
