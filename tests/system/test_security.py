"""Security (issue #6): two users and an anonymous visitor against every endpoint, the API and the
web pages alike, including the views that serve files.

- A stranger gets 404 for another user's private dataset, image, generator, run and job, and can
  change none of them. A shared generator is visible and usable by everyone, but only its owner
  may share, unshare or delete it (403 for others).
- Anonymous visitors are sent to the login page (web) or get 401 (API).
- Every URL the project routes is in the table below (a test walks the URL resolver), so a new
  endpoint cannot go untested.
- Uploaded files get names made by the server and live outside the static folders; MEDIA_ROOT is
  never served directly.
- CSRF is enforced on every web form and on the API under session authentication.
- Uploads and generation are throttled (429) over their rate.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from PIL import Image
from rest_framework.test import APIClient

from apps.datasets import services as dataset_services
from apps.datasets.models import Dataset, DatasetImage
from apps.generation.models import GenerationJob
from apps.generators.models import Generator, TrainingRun
from tests.factories import png_bytes, token_client

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


# --- the world: alice owns things, bob is the stranger ----------------------------------------


def write_png(settings, relative: str) -> str:
    path = Path(settings.MEDIA_ROOT) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "teal").save(path, "PNG")
    return relative


def uploads(count: int, start: int = 0) -> list[SimpleUploadedFile]:
    return [
        SimpleUploadedFile(f"p{start + i}.png", png_bytes(start + i), content_type="image/png") for i in range(count)
    ]


@dataclass
class World:
    """Ids of alice's objects, by the placeholder names the probe table uses."""

    dataset: int
    image: int
    private: int  # a ready, private generator
    shared: int  # a ready, shared generator
    training: int  # a shared generator that is still training (not visible to others yet)
    private_run: int  # a running training run of the private generator
    shared_run: int  # the finished run of the shared generator
    job: int  # a finished generation job from the private generator

    def ids(self) -> dict[str, int]:
        return self.__dict__


@pytest.fixture
def world(user, other_user, settings) -> World:
    dataset, _ = dataset_services.create_dataset(owner=user, name="alice-private-dataset", files=uploads(2))
    dataset_services.create_dataset(owner=other_user, name="bob-own-dataset", files=uploads(2, start=10))

    def generator(name, shared, status):
        made = Generator.objects.create(
            owner=user,
            name=name,
            kind="dcgan",
            resolution=32,
            preset="quick",
            dataset=dataset,
            shared=shared,
            status=status,
        )
        made.sample_grid = write_png(settings, f"generators/{made.pk}/samples.png")
        made.files_dir = f"generators/{made.pk}"
        write_png(settings, f"generators/{made.pk}/copies.png")
        made.save()
        return made

    private = generator("alice-private-generator", False, Generator.Status.READY)
    shared = generator("alice-shared-generator", True, Generator.Status.READY)
    training = generator("alice-training-generator", True, Generator.Status.TRAINING)
    private_run = TrainingRun.objects.create(generator=private, status=TrainingRun.Status.RUNNING, stage="train")
    private_run.latest_grid = write_png(settings, f"runs/{private_run.pk}/grid.png")
    private_run.save()
    shared_run = TrainingRun.objects.create(generator=shared, status=TrainingRun.Status.DONE, stage="cleanup")
    shared_run.latest_grid = write_png(settings, f"runs/{shared_run.pk}/grid.png")
    shared_run.save()
    job = GenerationJob.objects.create(owner=user, generator=private, count=1, seed=1, status=GenerationJob.Status.DONE)
    job.output_dir = f"jobs/{job.pk}/images"
    write_png(settings, f"{job.output_dir}/000001.png")
    job.archive = f"jobs/{job.pk}/alice-job.zip"
    with zipfile.ZipFile(Path(settings.MEDIA_ROOT) / job.archive, "w") as archive:
        archive.writestr("000001.png", png_bytes(5))
    job.save()
    return World(
        dataset=dataset.pk,
        image=dataset.images.first().pk,
        private=private.pk,
        shared=shared.pk,
        training=training.pk,
        private_run=private_run.pk,
        shared_run=shared_run.pk,
        job=job.pk,
    )


def alices_state(user, settings) -> dict:
    """Everything alice owns, and every file under MEDIA_ROOT: a stranger's request must change none of it."""
    root = Path(settings.MEDIA_ROOT)
    return {
        "datasets": set(Dataset.objects.filter(owner=user).values_list("id", "name")),
        "images": set(DatasetImage.objects.filter(dataset__owner=user).values_list("id", "sha256", "original")),
        "generators": set(Generator.objects.filter(owner=user).values_list("id", "shared", "status", "name")),
        "runs": set(TrainingRun.objects.filter(generator__owner=user).values_list("id", "status", "cancel_requested")),
        "jobs": set(GenerationJob.objects.filter(owner=user).values_list("id", "status")),
        "files": {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
        },
    }


# --- the probe table: every endpoint -----------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request, and the status the owner (alice) and a stranger (bob) get.

    ``owner`` is None for requests that destroy the object (checked in their own test).
    Anonymous visitors get 401 from the API and a redirect to the login page from the web.
    """

    route: str
    method: str
    path: str  # with {placeholders} from World
    owner: int | None
    stranger: int
    body: str = ""  # a key of BODIES

    @property
    def api(self) -> bool:
        return self.route.startswith("api:")

    def url(self, world: World) -> str:
        return self.path.format(**world.ids())

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


BODIES = {
    "": lambda: {},
    "generate": lambda: {"count": 2},
    "share": lambda: {"shared": "1"},  # the web form's checkbox
    "api-share": lambda: {"shared": True},  # the API's JSON boolean
    "images": lambda: {"images": uploads(1, start=40)},
    "one-class": lambda: {"labelled": "false"},  # the wizard's answer: one class (what the dataset already is)
}

PROBES = [
    # --- web pages and the files they show
    Probe("api:generator-type-list", "get", "/api/generator-types/", 200, 200),
    Probe("api:generator-type-detail", "get", "/api/generator-types/dcgan/", 200, 200),
    Probe("datasets:list", "get", "/datasets/", 200, 200),
    Probe("datasets:detail", "get", "/datasets/{dataset}/", 200, 404),
    Probe("datasets:review", "get", "/datasets/{dataset}/review/", 200, 404),
    Probe("datasets:augmentation-preview", "get", "/datasets/{dataset}/augmentation.png", 200, 404),
    Probe("datasets:labelling", "post", "/datasets/{dataset}/labelling/", 200, 404, "one-class"),
    Probe("datasets:image", "get", "/datasets/images/{image}.png", 200, 404),
    Probe("datasets:image", "get", "/datasets/images/{image}.png?thumb=1", 200, 404),
    Probe("datasets:delete", "post", "/datasets/{dataset}/delete/", None, 404),
    Probe("generators:list", "get", "/generators/", 200, 200),
    Probe("generators:wizard", "get", "/generators/new/", 200, 200),
    Probe("generators:wizard-data", "get", "/generators/new/images/", 302, 302),  # back to step 1
    Probe("generators:detail", "get", "/generators/{private}/", 200, 404),
    Probe("generators:detail", "get", "/generators/{shared}/", 200, 200),
    Probe("generators:detail", "get", "/generators/{training}/", 200, 404),
    Probe("generators:share", "post", "/generators/{private}/share/", 302, 404, "share"),
    Probe("generators:share", "post", "/generators/{shared}/share/", 302, 403, "share"),
    Probe("generators:delete", "post", "/generators/{private}/delete/", None, 404),
    Probe("generators:delete", "post", "/generators/{shared}/delete/", None, 403),
    Probe("generators:sample-grid", "get", "/generators/{private}/samples.png", 200, 404),
    Probe("generators:sample-grid", "get", "/generators/{shared}/samples.png", 200, 200),
    Probe("generators:sample-grid", "get", "/generators/{training}/samples.png", 200, 404),
    Probe("generators:copies-grid", "get", "/generators/{private}/copies.png", 200, 404),
    Probe("generators:copies-grid", "get", "/generators/{shared}/copies.png", 200, 200),
    Probe("generators:run", "get", "/generators/runs/{private_run}/", 200, 404),
    Probe("generators:run", "get", "/generators/runs/{shared_run}/", 200, 404),  # runs are never shared
    Probe("generators:run-cancel", "post", "/generators/runs/{private_run}/cancel/", 302, 404),
    Probe("generators:run-grid", "get", "/generators/runs/{private_run}/grid.png", 200, 404),
    Probe("generators:run-grid", "get", "/generators/runs/{shared_run}/grid.png", 200, 404),
    Probe("generation:start", "post", "/jobs/new/{private}/", 302, 404, "generate"),
    Probe("generation:start", "post", "/jobs/new/{shared}/", 302, 302, "generate"),  # shared: usable
    Probe("generation:job", "get", "/jobs/{job}/", 200, 404),
    Probe("generation:results", "get", "/jobs/{job}/results/", 200, 404),
    Probe("generation:download", "get", "/jobs/{job}/download/", 200, 404),
    Probe("generation:image", "get", "/jobs/{job}/images/000001.png", 200, 404),
    Probe("generation:image", "get", "/jobs/{job}/images/..png", 404, 404),
    Probe("generation:image", "get", "/jobs/{job}/images/x/../000001.png", 404, 404),
    # --- the REST API
    Probe("api:api-root", "get", "/api/", 200, 200),
    Probe("api:dataset-list", "get", "/api/datasets/", 200, 200),
    Probe("api:dataset-detail", "get", "/api/datasets/{dataset}/", 200, 404),
    Probe("api:dataset-detail", "get", "/api/datasets/{dataset}.json", 200, 404),
    Probe("api:dataset-detail", "get", "/api/datasets/not-an-id/", 404, 404),
    Probe("api:dataset-detail", "delete", "/api/datasets/{dataset}/", None, 404),
    Probe("api:dataset-images", "post", "/api/datasets/{dataset}/images/", 200, 404, "images"),
    Probe("api:generator-list", "get", "/api/generators/", 200, 200),
    Probe("api:generator-detail", "get", "/api/generators/{private}/", 200, 404),
    Probe("api:generator-detail", "get", "/api/generators/{shared}/", 200, 200),
    Probe("api:generator-detail", "get", "/api/generators/{training}/", 200, 404),
    Probe("api:generator-detail", "delete", "/api/generators/{private}/", None, 404),
    Probe("api:generator-detail", "delete", "/api/generators/{shared}/", None, 403),
    Probe("api:generator-generate", "post", "/api/generators/{private}/generate/", 202, 404, "generate"),
    Probe("api:generator-generate", "post", "/api/generators/{shared}/generate/", 202, 202, "generate"),
    Probe("api:generator-share", "post", "/api/generators/{private}/share/", 200, 404, "api-share"),
    Probe("api:generator-share", "post", "/api/generators/{shared}/share/", 200, 403, "api-share"),
    Probe("api:generator-sample-grid", "get", "/api/generators/{private}/sample-grid/", 200, 404),
    Probe("api:generator-export", "get", "/api/generators/{private}/export/", 400, 404),  # alice's has no weights
    Probe("api:generator-export", "get", "/api/generators/{training}/export/", 400, 404),  # not ready: not yet
    Probe("api:generator-import", "post", "/api/generators/import/", 400, 400),  # no file: nothing is created
    Probe("api:generator-sample-grid", "get", "/api/generators/{shared}/sample-grid/", 200, 200),
    Probe("api:run-list", "get", "/api/runs/", 200, 200),
    Probe("api:run-detail", "get", "/api/runs/{private_run}/", 200, 404),
    Probe("api:run-detail", "get", "/api/runs/{shared_run}/", 200, 404),
    Probe("api:run-cancel", "post", "/api/runs/{private_run}/cancel/", 200, 404),
    Probe("api:job-list", "get", "/api/jobs/", 200, 200),
    Probe("api:job-detail", "get", "/api/jobs/{job}/", 200, 404),
    Probe("api:job-detail", "delete", "/api/jobs/{job}/", None, 404),
    Probe("api:job-download", "get", "/api/jobs/{job}/download/", 200, 404),
]

# Routes open to everyone on purpose, with why.
PUBLIC = {
    "core:home": "the start page and tutorial",
    "login": "the login form",
    "logout": "logging out",
    "api:token": "exchanges a username and password for a token",
    "api:schema": "the OpenAPI description (no user data)",
    "api:docs": "Swagger UI for the schema",
}
# Routes whose POST body is the subject of other tests (the upload and training catalogue).
ELSEWHERE = {"api:dataset-list", "api:generator-list", "generators:wizard", "generators:wizard-data"}


def route_names() -> set[str]:
    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = (
                    f"{namespace}:{pattern.namespace}"
                    if namespace and pattern.namespace
                    else pattern.namespace or namespace
                )
                yield from walk(pattern.url_patterns, inner or "")
            elif isinstance(pattern, URLPattern):
                yield f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name

    return {name for name in walk(get_resolver().url_patterns) if name and not name.startswith("admin:")}


def test_every_routed_endpoint_is_probed():
    probed = {probe.route for probe in PROBES}
    assert route_names() - probed - set(PUBLIC) == set(), "add the new endpoints to PROBES (or PUBLIC, with a reason)"
    assert probed | set(PUBLIC) <= route_names() | ELSEWHERE


def send(client, probe: Probe, world: World):
    method = getattr(client, probe.method)
    body = BODIES[probe.body]()
    if probe.api and probe.body == "images":
        response = method(probe.url(world), body, format="multipart")
    elif probe.api and body:
        response = method(probe.url(world), body, format="json")
    else:
        response = method(probe.url(world), body)
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)
    return response


def web_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def client_for(user, api: bool):
    return token_client(user) if api else web_client(user)


@pytest.mark.parametrize("probe", [p for p in PROBES if p.owner is not None], ids=str)
def test_the_owner_can_use_their_own_objects(probe, world, user):
    response = send(client_for(user, probe.api), probe, world)
    assert response.status_code == probe.owner, (probe, response.status_code)


@pytest.mark.parametrize("probe", PROBES, ids=str)
def test_a_stranger_never_sees_or_changes_private_objects(probe, world, user, other_user, settings):
    before = alices_state(user, settings)
    response = send(client_for(other_user, probe.api), probe, world)
    assert response.status_code == probe.stranger, (probe, response.status_code)
    after = alices_state(user, settings)
    after["files"] = {path: digest for path, digest in after["files"].items() if path in before["files"]}
    assert after == before  # bob's own new job files aside, nothing of alice's changed


@pytest.mark.parametrize("probe", PROBES, ids=str)
def test_anonymous_visitors_are_sent_to_login_or_get_401(probe, world, user, settings):
    before = alices_state(user, settings)
    client = APIClient() if probe.api else Client()
    response = send(client, probe, world)
    if probe.api:
        assert response.status_code == 401, (probe, response.status_code)
        assert response["WWW-Authenticate"].startswith("Token")
    else:
        assert response.status_code == 302 and response["Location"].startswith(f"{LOGIN}?next="), probe
    assert alices_state(user, settings) == before


PUBLIC_REQUESTS = {
    # route: (method, url, status for an anonymous visitor)
    "core:home": ("get", "/", 200),
    "login": ("get", LOGIN, 200),
    "logout": ("post", "/accounts/logout/", 302),
    "api:token": ("post", "/api/auth/token/", 400),  # wrong password: no token
    "api:schema": ("get", "/api/schema/", 200),
    "api:docs": ("get", "/api/docs/", 200),
}


@pytest.mark.parametrize("route", sorted(PUBLIC))
def test_public_routes_show_no_private_data(route, world, client):
    method, url, status = PUBLIC_REQUESTS[route]
    response = getattr(client, method)(url, {"username": "alice", "password": "wrong"} if method == "post" else {})
    assert response.status_code == status
    assert not re.search(r"alice-(private|shared|training)", response.content.decode(errors="replace"))


@pytest.mark.parametrize("probe", [p for p in PROBES if p.owner is None], ids=str)
def test_only_the_owner_can_delete(probe, world, user, other_user, settings):
    assert send(client_for(other_user, probe.api), probe, world).status_code in (403, 404)
    response = send(client_for(user, probe.api), probe, world)
    assert response.status_code in (204, 302), response.status_code
    placeholder = re.search(r"\{(\w+)\}", probe.path).group(1)
    model = {"dataset": Dataset, "private": Generator, "shared": Generator, "job": GenerationJob}[placeholder]
    assert not model.objects.filter(pk=world.ids()[placeholder]).exists()


def test_lists_show_only_own_objects_and_shared_ready_generators(world, other_user):
    bob = token_client(other_user)
    assert [d["name"] for d in bob.get("/api/datasets/").json()["results"]] == ["bob-own-dataset"]
    names = {g["name"] for g in bob.get("/api/generators/").json()["results"]}
    assert names == {"alice-shared-generator"}
    for query in ("?status=training", "?status=ready", "?kind=dcgan"):
        listed = {g["name"] for g in bob.get(f"/api/generators/{query}").json()["results"]}
        assert listed <= {"alice-shared-generator"}, query
    assert bob.get("/api/runs/").json()["count"] == 0
    assert bob.get("/api/jobs/").json()["count"] == 0

    web = web_client(other_user)
    datasets_page = web.get("/datasets/").content.decode()
    assert "bob-own-dataset" in datasets_page and "alice-private-dataset" not in datasets_page
    generators_page = web.get("/generators/").content.decode()
    assert "alice-shared-generator" in generators_page
    assert "alice-private-generator" not in generators_page and "alice-training-generator" not in generators_page


def test_a_shared_generator_page_hides_the_owners_dataset_runs_and_jobs(world, other_user):
    page = web_client(other_user).get(f"/generators/{world.shared}/").content.decode()
    assert "alice-private-dataset" not in page
    assert f"/datasets/{world.dataset}/" not in page
    assert f"/generators/runs/{world.shared_run}/" not in page
    assert f"/jobs/{world.job}/" not in page
    api = token_client(other_user).get(f"/api/generators/{world.shared}/").json()
    assert "alice-private-dataset" not in str(api)


def test_admin_is_for_staff_only(world, other_user):
    response = web_client(other_user).get("/admin/generators/generator/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


# --- uploaded files: server-made names, outside static/, never served directly ------------------


STORED = re.compile(r"^datasets/\d+/(originals/[0-9a-f]{32}\.(png|jpg|webp|gif)|working/[0-9a-f]{32}\.png)$")


def test_uploaded_files_get_server_made_names(api, settings):
    jpeg = io.BytesIO()
    Image.new("RGB", (24, 24), "orange").save(jpeg, "JPEG")
    files = [
        SimpleUploadedFile("../../../etc/cron.d/evil.php", jpeg.getvalue()),
        SimpleUploadedFile("<img src=x onerror=alert(1)>.png", png_bytes(1)),
        SimpleUploadedFile("name with spaces and ünïcode.PNG", png_bytes(2)),
    ]
    response = api.post("/api/datasets/", {"name": "names", "images": files}, format="multipart")
    assert response.status_code == 201, response.content
    root = Path(settings.MEDIA_ROOT).resolve()
    images = list(DatasetImage.objects.all())
    assert len(images) == 3
    for image in images:
        for stored in (image.original.name, image.working.name):
            assert STORED.match(stored), stored
            assert (root / stored).resolve().is_relative_to(root) and (root / stored).is_file()
    by_name = {image.original_name: image for image in images}
    assert by_name["evil.php"].original.name.endswith(".jpg")  # the content's format, not the name's
    assert {p.relative_to(root).parts[0] for p in root.rglob("*") if p.is_file()} == {"datasets"}


def test_file_names_are_escaped_in_the_pages(user, settings):
    client = web_client(user)
    dataset, _ = dataset_services.create_dataset(
        owner=user, name="<b>bold</b>", files=[SimpleUploadedFile("<img src=x onerror=alert(1)>.png", png_bytes(3))]
    )
    for url in (f"/datasets/{dataset.pk}/", f"/datasets/{dataset.pk}/review/", "/datasets/"):
        page = client.get(url).content.decode()
        assert "<img src=x onerror" not in page and "<b>bold</b>" not in page, url


def test_media_lives_outside_static_and_is_not_served_directly(world, user, settings):
    from synthgen.settings import base

    media = Path(base.MEDIA_ROOT).resolve()
    for static in [*base.STATICFILES_DIRS, base.STATIC_ROOT]:
        static = Path(static).resolve()
        assert not media.is_relative_to(static) and not static.is_relative_to(media), static
    image = DatasetImage.objects.get(pk=world.image)
    client = web_client(user)
    for url in (f"/media/{image.working.name}", f"/static/{image.working.name}", f"/{image.working.name}"):
        assert client.get(url).status_code == 404, url


# --- CSRF -------------------------------------------------------------------------------------


def csrf_client(user=None) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    client.get(LOGIN if user is None else "/generators/new/")
    return client, client.cookies["csrftoken"].value


FORMS = {
    # name: (url, body, status with a token)
    "login": (LOGIN, {"username": "alice", "password": "alice-password-1"}, 302),
    "logout": ("/accounts/logout/", {}, 302),
    "wizard-step-1": ("/generators/new/", {"name": "x", "kind": "dcgan", "resolution": "32", "preset": "quick"}, 302),
    "generate": ("/jobs/new/{shared}/", {"count": "2"}, 302),
    "share": ("/generators/{private}/share/", {"shared": "1"}, 302),
    "cancel-run": ("/generators/runs/{private_run}/cancel/", {}, 302),
    "delete-generator": ("/generators/{private}/delete/", {}, 302),
    "delete-dataset": ("/datasets/{dataset}/delete/", {}, 302),
}


@pytest.mark.parametrize("form", FORMS)
def test_web_forms_need_a_csrf_token(form, world, user, settings):
    url, body, ok = FORMS[form]
    url = url.format(**world.ids())
    client, token = csrf_client(None if form == "login" else user)
    before = alices_state(user, settings)
    assert client.post(url, body).status_code == 403
    assert client.post(url, {**body, "csrfmiddlewaretoken": "x" * 64}).status_code == 403
    assert alices_state(user, settings) == before
    assert client.post(url, {**body, "csrfmiddlewaretoken": token}).status_code == ok


def test_wizard_step_2_needs_a_csrf_token(user):
    client, token = csrf_client(user)
    step1 = {"name": "x", "kind": "dcgan", "resolution": "32", "preset": "quick", "csrfmiddlewaretoken": token}
    assert client.post("/generators/new/", step1).status_code == 302
    assert client.post("/generators/new/images/", {"images": uploads(4)}).status_code == 403
    assert not Dataset.objects.exists()
    response = client.post("/generators/new/images/", {"images": uploads(4), "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and Generator.objects.count() == 1


def test_the_api_under_session_auth_needs_a_csrf_token_and_token_auth_does_not(world, other_user):
    client, token = csrf_client(other_user)
    url = f"/api/generators/{world.shared}/generate/"
    refused = client.post(url, {"count": 2}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert client.post(url, {"count": 2}, content_type="application/json", HTTP_X_CSRFTOKEN=token).status_code == 202
    assert client.post("/api/datasets/", {"name": "n", "images": uploads(1)}).status_code == 403
    assert token_client(other_user).post(url, {"count": 2}, format="json").status_code == 202
    assert GenerationJob.objects.filter(owner=other_user).count() == 2


# --- throttling -------------------------------------------------------------------------------


@pytest.fixture
def low_rates(settings, monkeypatch):
    """Two uploads and two generation requests a minute. DRF copies the rates onto the throttle class
    when it is imported, so the class attribute follows the settings override here."""
    from rest_framework.settings import api_settings
    from rest_framework.throttling import ScopedRateThrottle

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"uploads": "2/min", "generation": "2/min"},
    }
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", api_settings.DEFAULT_THROTTLE_RATES)
    cache.clear()
    yield
    cache.clear()


def test_the_write_endpoints_have_a_scoped_throttle():
    from rest_framework.test import APIRequestFactory
    from rest_framework.throttling import ScopedRateThrottle

    from apps.datasets.api import DatasetViewSet
    from apps.generation.api import GenerateView
    from apps.generators.api import GeneratorViewSet

    views = [
        viewset(action=action, request=APIRequestFactory().post("/"))
        for viewset, action in [(DatasetViewSet, "create"), (DatasetViewSet, "images"), (GeneratorViewSet, "create")]
    ]
    for view, scope in zip([*views, GenerateView()], ["uploads", "uploads", "generation", "generation"]):
        throttles = view.get_throttles()
        assert any(isinstance(t, ScopedRateThrottle) for t in throttles), view
        assert view.throttle_scope == scope
    reading = DatasetViewSet(action="list", request=APIRequestFactory().get("/"))
    assert reading.get_throttles() == []


def test_uploads_over_the_rate_get_429_and_store_nothing(low_rates, api, other_api, settings):
    for i in range(2):
        assert (
            api.post("/api/datasets/", {"name": f"d{i}", "images": uploads(1, start=i)}, format="multipart").status_code
            == 201
        )
    images_before = DatasetImage.objects.count()
    throttled = api.post("/api/datasets/", {"name": "d3", "images": uploads(1, start=9)}, format="multipart")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    assert "throttled" in throttled.json()["detail"].lower()
    dataset = Dataset.objects.first()
    more = api.post(f"/api/datasets/{dataset.pk}/images/", {"images": uploads(1, start=8)}, format="multipart")
    assert more.status_code == 429  # adding images counts against the same rate
    assert Dataset.objects.count() == 2 and DatasetImage.objects.count() == images_before
    assert api.get("/api/datasets/").status_code == 200  # reading is not throttled
    assert (
        other_api.post("/api/datasets/", {"name": "b", "images": uploads(1, start=7)}, format="multipart").status_code
        == 201
    )


def test_generation_over_the_rate_gets_429_and_queues_nothing(low_rates, world, api, other_api):
    url = f"/api/generators/{world.shared}/generate/"
    assert [api.post(url, {"count": 1}, format="json").status_code for _ in range(2)] == [202, 202]
    jobs = GenerationJob.objects.count()
    throttled = api.post(url, {"count": 1}, format="json")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    training = api.post("/api/generators/", {"name": "g", "dataset": world.dataset, "kind": "dcgan"}, format="json")
    assert training.status_code == 429  # starting a training run counts against the same rate
    assert GenerationJob.objects.count() == jobs
    assert other_api.post(url, {"count": 1}, format="json").status_code == 202
