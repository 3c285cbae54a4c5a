#!/usr/bin/env bash
# Runs SynthGen on one machine: migrate, make an admin account on first run, then the web server
# and a real Celery worker. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8000}
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-synthgen.settings.dev}

$PY manage.py migrate --noinput
$PY manage.py ensure_admin

pids=()
stop() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
  wait 2>/dev/null
  exit 0
}
trap stop INT TERM EXIT

# One worker process for both queues; solo pool: CUDA cannot be initialised in a forked child.
$PY -m celery -A synthgen worker -Q default,gpu --pool solo --concurrency 1 --loglevel INFO --beat &
pids+=($!)
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload &
pids+=($!)
echo "SynthGen is running on http://127.0.0.1:${PORT}/  (Ctrl-C stops web server and worker)"
wait -n "${pids[@]}"
