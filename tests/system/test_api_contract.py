"""The API does what its OpenAPI schema says: schemathesis (from PyPI) against a live server.

Run as a new user would run it: the CLI (`st run`) with the schema's URL and a token got over HTTP, all
checks, all four phases (examples, coverage, fuzzing, stateful). Any failure fails this test, and
schemathesis's report (each failure with a curl line that reproduces it) is the assertion message.

Before the run the user uploads a dataset and trains a generator (tiny models, eagerly), so that the
lists answer real objects and some requests reach them: schemathesis draws the ids of these objects
for half of the requests to their paths (the rest are its own). What schemathesis is told beyond
the schema is in tests/system/schemathesis.toml, each item with its reason.

Bounded and deterministic: deterministic generation (no random seed, no example database), one
worker, MAX_EXAMPLES per operation and phase, a small generation cap.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.factories import png_bytes

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 10
PROBABILITY = 0.5  # of drawing a real object's id for a path's {id}


def _files(start: int, count: int):
    return [("images", (f"img{start + i}.png", png_bytes(start + i), "image/png")) for i in range(count)]


def _objects(base: str, session: requests.Session) -> dict[str, list[int]]:
    """What a new user makes first: two datasets, two trained generators, two jobs (the second of each to delete)."""

    def post(path, **kwargs):
        response = session.post(base + path, timeout=300, **kwargs)
        assert response.status_code in (201, 202), (path, response.text)
        return response.json()

    datasets = [post("/api/datasets/", data={"name": f"ellipses {i}"}, files=_files(10 * i, 6))["id"] for i in range(2)]
    generators = [
        post(
            "/api/generators/",
            json={
                "name": f"ellipses {i}",
                "dataset": datasets[0],
                "kind": "dcgan",
                "resolution": 32,
                "preset": "quick",
            },
        )
        for i in range(2)
    ]
    generator = session.get(f"{base}/api/generators/{generators[0]['id']}/", timeout=30).json()
    assert generator["status"] == "ready", generator
    jobs = [
        post(f"/api/generators/{generator['id']}/generate/", json={"count": 2, "seed": i, "filter": False})["id"]
        for i in range(2)
    ]
    types = [t["key"] for t in session.get(f"{base}/api/generator-types/", timeout=30).json()]
    return {
        "datasets": datasets[:1],
        "spare-datasets": datasets[1:],
        "generators": [generator["id"]],
        "spare-generators": [generators[1]["id"]],
        "runs": [generator["run"]],
        "jobs": jobs[:1],
        "spare-jobs": jobs[1:],
        "generator-types": types,
    }


# (method regex, path regex) -> the dictionary of real ids drawn for its {id}. Deleting: the spare objects only.
REAL_IDS = {
    ("GET|POST", "/api/datasets/{id}/images/"): "datasets",
    ("GET", "/api/datasets/{id}/"): "datasets",
    ("DELETE", "/api/datasets/{id}/"): "spare-datasets",
    ("GET|POST", "/api/generators/{id}/(generate|share|sample-grid|export)/"): "generators",
    ("GET", "/api/generators/{id}/"): "generators",
    ("DELETE", "/api/generators/{id}/"): "spare-generators",
    ("GET", "/api/generator-types/{id}/"): "generator-types",
    ("GET|POST", "/api/runs/{id}/(cancel/)?"): "runs",
    ("GET", "/api/jobs/{id}/(download/)?"): "jobs",
    ("DELETE", "/api/jobs/{id}/"): "spare-jobs",
}


def _config(objects: dict[str, list[int]], path: Path) -> Path:
    """tests/system/schemathesis.toml plus this run's real ids (they differ from run to run)."""
    lines = [CONFIG.read_text(), "\n# This run's objects (tests/system/test_api_contract.py).\n"]
    for name, ids in objects.items():
        lines.append(f"[dictionaries.{name}]\nvalues = {json.dumps(ids)}\n\n")
    for (methods, route), name in REAL_IDS.items():
        regex = f"^({methods}) " + route.replace("{id}", "\\\\{id\\\\}") + "$"  # an operation's name: "GET /api/..."
        lines.append(
            f'[[operations]]\ninclude-name-regex = "{regex}"\n'
            f'parameters = {{ "path.id" = {{ dictionary = "{name}", probability = {PROBABILITY} }} }}\n\n'
        )
    path.write_text("".join(lines))
    return path


@pytest.mark.contract
@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_contract_failure(live_server, user, settings, tmp_path):
    settings.SYNTHGEN_MAX_GENERATION_COUNT = 8  # the schema's maximum follows: its boundary cases stay quick
    session = requests.Session()
    token = session.post(
        f"{live_server.url}/api/auth/token/", data={"username": "alice", "password": "alice-password-1"}, timeout=30
    ).json()["token"]
    session.headers["Authorization"] = f"Token {token}"
    config = _config(_objects(live_server.url, session), tmp_path / "schemathesis.toml")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{live_server.url}/api/schema/?format=json",
        "--header",
        f"Authorization: Token {token}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "120",
        "--continue-on-failure",  # a failing run lists every failure, not only each operation's first
    ]
    # From the repository root (tests/system/schemathesis.toml names its hooks file from there); Hypothesis's
    # files go to the test's temporary folder.
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "COLUMNS": "120",
        "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path / "hypothesis"),
    }
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    output = result.stdout + result.stderr
    print(output)  # pytest -rP shows it for a passing run
    assert result.returncode == 0, f"schemathesis found contract failures:\n{output}"
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected and tested and selected[1] == selected[2] == tested[1], output  # every operation, none left out


# The failures schemathesis found before, each checked directly (quick, and says which one broke).


def test_a_path_under_api_that_matches_no_endpoint_is_a_json_404(api, client):
    for path in (
        "/api/nothing-here/",
        "/api/datasets/1/nothing/",
        "/api/generator-types/%C2%84/",
        "/api/jobs/1.5/download/",
    ):
        for answer in (api.get(path), api.delete(path), client.post(path)):
            assert answer.status_code == 404 and answer["Content-Type"] == "application/json", (path, answer)
            assert answer.json()["detail"].startswith("No API endpoint at this address"), (path, answer.request)
    assert client.get("/nothing-here/")["Content-Type"].startswith("text/html")  # the web pages keep theirs
    assert client.get("/api/datasets").status_code == 301  # APPEND_SLASH still redirects


@pytest.mark.parametrize("page", ["0", "2", "-1", "1.0", "last", "", " 1", "\u0661", "x"])
def test_a_page_that_is_not_a_page_number_up_to_the_last_is_a_404(api, page):
    for path in ("/api/datasets/", "/api/generators/", "/api/runs/", "/api/jobs/"):
        answer = api.get(path, {"page": page})
        assert answer.status_code == 404 and answer.json() == {"detail": "Invalid page."}, (path, page)
    assert api.get("/api/datasets/", {"page": "1"}).status_code == 200


def test_a_body_that_is_not_json_gets_400_with_field_errors(api):
    for path in ("/api/generators/", "/api/generators/1/share/"):
        answer = api.post(path, b"\x00", content_type="application/json")
        assert answer.status_code in (400, 404)
        if answer.status_code == 400:
            assert list(answer.json()) == ["non_field_errors"]
            assert answer.json()["non_field_errors"][0].startswith("JSON parse error")


def test_json_bodies_take_the_schemas_types_and_nothing_else(api, user):
    from apps.generators.models import Generator

    generator = Generator.objects.create(
        owner=user, name="g", kind="dcgan", resolution=32, preset="quick", status="ready"
    )
    share = f"/api/generators/{generator.pk}/share/"
    for shared in ("1", "0", 1, 0, "true", None):
        answer = api.post(share, {"shared": shared}, format="json")
        assert answer.status_code == 400 and "shared" in answer.json(), shared
    assert api.post(share, {"shared": False}, format="json").json()["shared"] is False
    assert api.post(share, {"shared": "false"}, format="multipart").status_code == 415  # JSON only
    for body, field in (
        ({"count": "2"}, "count"),
        ({"count": True}, "count"),
        ({"count": 2, "filter": "no"}, "filter"),
    ):
        answer = api.post(f"/api/generators/{generator.pk}/generate/", body, format="json")
        assert answer.status_code == 400 and field in answer.json(), body
    answer = api.post(
        "/api/generators/", {"name": 5, "dataset": "1", "kind": "dcgan", "resolution": "32"}, format="json"
    )
    assert answer.status_code == 400 and {"name", "dataset", "resolution"} <= set(answer.json())


def test_an_unknown_status_filter_is_a_400(api):
    assert api.get("/api/generators/", {"status": "finished"}).json() == {
        "status": ['"finished" is not a valid choice.']
    }
    assert api.get("/api/generators/", {"status": "ready", "kind": ""}).status_code == 200


def test_the_schema_says_an_upload_needs_images_or_a_zip(client):
    schema = client.get("/api/schema/?format=json").json()
    for name in ("DatasetUploadRequest", "DatasetImagesRequest"):
        upload = schema["components"]["schemas"][name]
        assert upload["anyOf"] == [
            {"required": ["images"], "properties": {"images": {"minItems": 1}}},
            {"required": ["archive"]},
        ]
    for path in ("/api/datasets/", "/api/datasets/{id}/images/"):
        assert list(schema["paths"][path]["post"]["requestBody"]["content"]) == ["multipart/form-data"]
        assert schema["paths"][path]["post"]["requestBody"]["required"] is True
    for path in ("/api/generators/", "/api/generators/{id}/generate/", "/api/generators/{id}/share/"):
        assert list(schema["paths"][path]["post"]["requestBody"]["content"]) == ["application/json"]
        assert "415" in schema["paths"][path]["post"]["responses"]
    for path in ("/api/datasets/", "/api/generators/", "/api/runs/", "/api/jobs/"):
        assert "404" in schema["paths"][path]["get"]["responses"]
