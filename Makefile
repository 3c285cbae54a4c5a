# SynthGen: `make run` runs the application (web + worker), `make test` runs the tests.
# Both set up everything they need on a fresh machine (virtualenv, packages, browser).
# On several machines: `make migrate`, `make web`, `make worker QUEUES=...` and `make beat` start one
# process each (README: "Running on several machines").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The test suite runs against the real services (PostgreSQL, Redis) on this machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/synthgen
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# Queues `make worker` consumes: gpu (train, evaluate, generate) and default (the other stages, the sweeper).
QUEUES ?= gpu,default
# Where `make web` listens.
BIND ?= 127.0.0.1:$${PORT:-8000}
# The processes started apart use the production settings unless DJANGO_SETTINGS_MODULE says otherwise.
DEPLOY := DJANGO_SETTINGS_MODULE=$${DJANGO_SETTINGS_MODULE:-synthgen.settings.production}

.PHONY: run test lint format venv browser migrate web worker beat clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium and ChromeDriver for the browser tests (no browser download at run time).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

run: venv
	PY=$(PY) ./scripts/run.sh

migrate: venv
	$(DEPLOY) $(PY) manage.py migrate --noinput

# Static files are collected and served by gunicorn itself (whitenoise): no CDN, no other web server needed.
web: venv
	$(DEPLOY) $(PY) manage.py collectstatic --noinput --verbosity 0
	$(DEPLOY) exec $(VENV)/bin/gunicorn synthgen.wsgi:application --bind $(BIND) --worker-class gthread --threads 8 \
		--timeout 300 --access-logfile -

# One worker process; solo pool: CUDA cannot be initialised in a forked child. CUDA_VISIBLE_DEVICES picks its GPU.
worker: venv
	$(DEPLOY) exec $(PY) -m celery -A synthgen worker -Q $(QUEUES) --pool solo --concurrency 1 --loglevel INFO

# The stale-run sweeper's clock: exactly one per deployment (it only sends the sweep task to a `default` worker).
beat: venv
	$(DEPLOY) exec $(PY) -m celery -A synthgen beat --loglevel INFO

# Lint, format and import order (ruff), and types (mypy, strict on apps/ml and the services: pyproject.toml);
# `make test` runs it first, so CI does too. `make format` rewrites what ruff can.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint venv browser
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} SYNTHGEN_TEST_REDIS_URL=$${SYNTHGEN_TEST_REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) -m pytest

clean:
	rm -rf var media/* .pytest_cache
