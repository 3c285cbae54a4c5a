"""The REST API over real HTTP (requests) against a live server: every endpoint, and its error answers.

Tasks run eagerly inside the live server (tiny models), so a generator is ready when its POST returns.
The first test records every (method, route) it calls and checks that this is every route the OpenAPI
schema lists, so a new endpoint without a live test fails here.
"""

from __future__ import annotations

import io
import re
import zipfile

import pytest
import requests
from PIL import Image

from apps.generators.models import Generator, TrainingRun
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db(transaction=True)


class Api:
    """requests with a base URL and a token; remembers which schema routes it called."""

    def __init__(self, base: str, token: str | None = None, called: set | None = None):
        self.base = base
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Token {token}"
        self.called = called if called is not None else set()

    def __call__(self, method: str, path: str, route: str | None = None, **kwargs) -> requests.Response:
        """``route``: the schema path this request exercises (worked out from ``path`` for numeric ids)."""
        route = route or re.sub(r"/\d+/", "/{id}/", path.split("?")[0])
        self.called.add((method.upper(), route))
        return self.session.request(method, self.base + path, timeout=120, **kwargs)


def files(*names_and_data):
    return [("images", (name, data, "image/png")) for name, data in names_and_data]


def pngs(count: int, start: int = 0):
    return files(*[(f"img{start + i}.png", png_bytes(start + i)) for i in range(count)])


def token_for(base: str, username: str, password: str) -> str:
    response = requests.post(f"{base}/api/auth/token/", data={"username": username, "password": password}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["token"]


@pytest.fixture
def alice(live_server, user):
    return Api(live_server.url, token_for(live_server.url, "alice", "alice-password-1"))


@pytest.fixture
def bob(live_server, other_user):
    return Api(live_server.url, token_for(live_server.url, "bob", "bob-password-1"))


def schema_routes(api: Api) -> set[tuple[str, str]]:
    schema = api("GET", "/api/schema/?format=json").json()
    return {(method.upper(), path) for path, operations in schema["paths"].items() for method in operations}


def test_every_endpoint_answers_over_http(alice, live_server):
    api = alice
    api.called.add(("POST", "/api/auth/token/"))  # the fixture got the token over HTTP

    created = api(
        "POST", "/api/datasets/", data={"name": "ellipses"}, files=pngs(6) + files(("notes.png", b"not a picture"))
    )
    assert created.status_code == 201, created.text
    dataset = created.json()
    assert (dataset["image_count"], [r["file"] for r in dataset["rejected"]]) == (6, ["notes.png"])
    added = api("POST", f"/api/datasets/{dataset['id']}/images/", files=pngs(2, start=50))
    assert added.status_code == 200 and added.json()["image_count"] == 8
    assert api("GET", "/api/datasets/").json()["results"][0]["id"] == dataset["id"]
    assert api("GET", f"/api/datasets/{dataset['id']}/").json()["image_count"] == 8

    types = api("GET", "/api/generator-types/").json()
    assert {"dcgan", "ddim"} <= {t["key"] for t in types}
    dcgan = api("GET", "/api/generator-types/dcgan/", route="/api/generator-types/{id}/").json()
    assert dcgan["uses_sampling_steps"] is False and dcgan["label"].startswith("DCGAN")

    response = api(
        "POST",
        "/api/generators/",
        json={
            "name": "ellipses",
            "dataset": dataset["id"],
            "kind": "dcgan",
            "resolution": 32,
            "augment": True,
            "preset": "quick",
        },
    )
    assert response.status_code == 202, response.text
    generator = api("GET", f"/api/generators/{response.json()['id']}/").json()
    assert generator["status"] == "ready" and generator["owner"] == "alice"
    listed = api("GET", "/api/generators/?kind=dcgan&status=ready").json()
    assert [g["id"] for g in listed["results"]] == [generator["id"]]
    assert api("GET", "/api/generators/?kind=ddim").json()["count"] == 0
    grid = api("GET", f"/api/generators/{generator['id']}/sample-grid/")
    assert grid.status_code == 200 and grid.content.startswith(b"\x89PNG")
    exported = api("GET", f"/api/generators/{generator['id']}/export/")
    assert exported.status_code == 200 and exported.headers["Content-Type"] == "application/zip"
    imported = api(
        "POST",
        "/api/generators/import/",
        data={"name": "ellipses again"},
        files=[("file", ("ellipses.synthgen.zip", exported.content, "application/zip"))],
    )
    assert imported.status_code == 201 and imported.json()["status"] == "ready", imported.text
    refused = api(
        "POST", "/api/generators/import/", files=[("file", ("x.zip", exported.content[:50], "application/zip"))]
    )
    assert refused.status_code == 400 and "not a complete zip" in refused.json()["file"][0]
    assert api("DELETE", f"/api/generators/{imported.json()['id']}/").status_code == 204

    run = api("GET", f"/api/runs/{generator['run']}/").json()
    assert run["status"] == "done" and run["progress"]["step"] == run["progress"]["total"] > 0
    assert api("GET", "/api/runs/").json()["results"][0]["id"] == run["id"]
    cancelled = api("POST", f"/api/runs/{run['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "done"  # finished: nothing to cancel

    shared = api("POST", f"/api/generators/{generator['id']}/share/", json={"shared": False})
    assert shared.status_code == 200 and shared.json()["shared"] is False

    job = api("POST", f"/api/generators/{generator['id']}/generate/", json={"count": 5, "seed": 11, "filter": False})
    assert job.status_code == 202, job.text
    job = api("GET", f"/api/jobs/{job.json()['id']}/").json()
    assert (job["status"], job["produced"], job["seed"]) == ("done", 5, 11)
    assert api("GET", "/api/jobs/").json()["results"][0]["id"] == job["id"]
    download = api("GET", f"/api/jobs/{job['id']}/download/")
    assert download.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    names = sorted(n for n in archive.namelist() if n.endswith(".png"))
    assert len(names) == 5 and Image.open(io.BytesIO(archive.read(names[0]))).size == (32, 32)
    assert job["download_url"].endswith(f"/api/jobs/{job['id']}/download/")

    assert api("DELETE", f"/api/jobs/{job['id']}/").status_code == 204
    assert api("DELETE", f"/api/generators/{generator['id']}/").status_code == 204
    assert api("DELETE", f"/api/datasets/{dataset['id']}/").status_code == 204
    assert api("GET", f"/api/datasets/{dataset['id']}/").status_code == 404

    docs = api("GET", "/api/docs/")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "cdn" not in docs.text.lower() and "//unpkg" not in docs.text
    expected = schema_routes(api)
    assert api.called - {("GET", "/api/schema/"), ("GET", "/api/docs/")} == expected


def test_without_a_token_every_endpoint_is_401(live_server, alice):
    anonymous = Api(live_server.url)
    for method, route in sorted(schema_routes(alice) - {("POST", "/api/auth/token/")}):
        response = anonymous(method, route.replace("{id}", "1"))
        assert response.status_code == 401, (method, route, response.status_code)
        assert "credentials were not provided" in response.json()["detail"]
    bad = Api(live_server.url, token="not-a-real-token")
    assert bad("GET", "/api/datasets/").json() == {"detail": "Invalid token."}


def test_wrong_password_is_a_400_that_says_so(live_server, user):
    response = requests.post(
        f"{live_server.url}/api/auth/token/", data={"username": "alice", "password": "nope"}, timeout=30
    )
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}


def test_bad_input_gets_400_with_field_errors(alice):
    api = alice
    assert api("POST", "/api/datasets/", data={"name": "empty"}).json() == {
        "images": ["Choose image files (PNG, JPEG or WebP) or a zip of them to upload."]
    }
    too_long = api("POST", "/api/datasets/", data={"name": "x" * 121}, files=pngs(1))
    assert too_long.status_code == 400 and "name" in too_long.json()
    only_bad = api("POST", "/api/datasets/", data={"name": "bad"}, files=files(("a.png", b"text")))
    assert only_bad.status_code == 400 and "a.png: not an image" in only_bad.json()["images"][0]
    dataset = api("POST", "/api/datasets/", data={"name": "ellipses"}, files=pngs(5)).json()
    no_files = api("POST", f"/api/datasets/{dataset['id']}/images/")
    assert no_files.status_code == 400 and "images" in no_files.json()

    bad_generator = api(
        "POST",
        "/api/generators/",
        json={"name": "", "dataset": 999999, "kind": "vae", "resolution": 48, "preset": "forever"},
    )
    assert bad_generator.status_code == 400
    assert set(bad_generator.json()) == {"name", "dataset", "kind", "resolution", "preset"}
    assert bad_generator.json()["kind"] == ['"vae" is not a valid choice.']

    response = api(
        "POST",
        "/api/generators/",
        json={"name": "e", "dataset": dataset["id"], "kind": "dcgan", "resolution": 32, "preset": "quick"},
    )
    generator_id = response.json()["id"]
    for body, field in (
        ({"count": 0}, "count"),
        ({"count": 10_001}, "count"),
        ({"count": 2, "seed": -1}, "seed"),
        ({"count": 2, "steps": 20}, "steps"),
        ({}, "count"),
    ):
        answer = api("POST", f"/api/generators/{generator_id}/generate/", json=body)
        assert answer.status_code == 400 and field in answer.json(), (body, answer.text)
    assert (
        "dcgan generators take no sampling steps"
        in api("POST", f"/api/generators/{generator_id}/generate/", json={"count": 2, "steps": 20}).json()["steps"][0]
    )
    share = api("POST", f"/api/generators/{generator_id}/share/", json={})
    assert share.status_code == 400 and share.json() == {"shared": ["This field is required."]}


def test_other_users_objects_are_404_and_shared_generators_are_read_only(alice, bob):
    dataset = alice("POST", "/api/datasets/", data={"name": "ellipses"}, files=pngs(5)).json()
    generator = alice(
        "POST",
        "/api/generators/",
        json={
            "name": "e",
            "dataset": dataset["id"],
            "kind": "dcgan",
            "resolution": 32,
            "preset": "quick",
            "shared": True,
        },
    ).json()
    job = alice("POST", f"/api/generators/{generator['id']}/generate/", json={"count": 2, "filter": False}).json()

    for method, path in (
        ("GET", f"/api/datasets/{dataset['id']}/"),
        ("DELETE", f"/api/datasets/{dataset['id']}/"),
        ("POST", f"/api/datasets/{dataset['id']}/images/"),
        ("GET", f"/api/runs/{generator['run']}/"),
        ("POST", f"/api/runs/{generator['run']}/cancel/"),
        ("GET", f"/api/jobs/{job['id']}/"),
        ("GET", f"/api/jobs/{job['id']}/download/"),
        ("DELETE", f"/api/jobs/{job['id']}/"),
        ("GET", "/api/generators/999999/"),
        ("GET", "/api/generator-types/vae/"),
    ):
        response = bob(method, path)
        assert response.status_code == 404, (method, path, response.status_code)
        assert response.json()["detail"].startswith("No ")  # e.g. "No Dataset matches the given query."

    # A shared generator: bob may use it, not change it.
    assert bob("GET", f"/api/generators/{generator['id']}/").status_code == 200
    assert bob("POST", f"/api/generators/{generator['id']}/generate/", json={"count": 1}).status_code == 202
    for method, path, body in (
        ("POST", f"/api/generators/{generator['id']}/share/", {"shared": False}),
        ("DELETE", f"/api/generators/{generator['id']}/", None),
    ):
        response = bob(method, path, json=body)
        assert response.status_code == 403
        assert response.json() == {"detail": "Only the owner can change this generator."}
    # Made private, it is gone for bob.
    alice("POST", f"/api/generators/{generator['id']}/share/", json={"shared": False})
    assert bob("GET", f"/api/generators/{generator['id']}/").status_code == 404
    assert Generator.objects.get().shared is False


def test_cancel_an_active_run(alice, user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.datasets.services import create_dataset

    dataset = create_dataset(owner=user, name="d", files=[SimpleUploadedFile("a.png", png_bytes(1))])[0]
    generator = Generator.objects.create(
        owner=user, name="g", kind="dcgan", resolution=32, dataset=dataset, preset="quick"
    )
    run = TrainingRun.objects.create(generator=generator)  # queued: nothing picks it up here
    response = alice("POST", f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert alice("GET", f"/api/generators/{generator.pk}/").json()["status"] == "cancelled"


def test_uploads_are_throttled_with_retry_after(alice, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    cache.clear()
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"uploads": "2/min", "generation": "2/min"})
    answers = [alice("POST", "/api/datasets/", data={"name": f"d{i}"}, files=pngs(1, start=i)) for i in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert int(answers[2].headers["Retry-After"]) > 0
    assert "throttled" in answers[2].json()["detail"]
    assert alice("GET", "/api/datasets/").status_code == 200  # reading is never throttled
