# SynthGen: `make run` runs the application (web + worker), `make test` runs the tests.
# Both set up everything they need on a fresh machine (virtualenv, packages, browser).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The test suite runs against the real services (PostgreSQL, Redis) on this machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/synthgen
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test venv browser migrate worker web clean

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

test: venv browser
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} SYNTHGEN_TEST_REDIS_URL=$${SYNTHGEN_TEST_REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) -m pytest

clean:
	rm -rf var media/* .pytest_cache
