"""Bad input (issue #6): through the web wizard and the REST API, each case gets a clear error,
nothing of a refused request is stored, and the images of a dataset that already exists stay as they were.

Every case goes in both ways a user has: the API (``POST /api/datasets/`` with a token) and the web
wizard (step 1 in the session, then the files posted to step 2 at ``/generators/new/images/``, with
CSRF checks on, as a browser without JavaScript does). A refused request is checked against a
snapshot of the database rows and of every file under MEDIA_ROOT taken just before it.
"""

from __future__ import annotations

import hashlib
import html
import io
import re
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from apps.datasets import services as dataset_services
from apps.datasets.models import Dataset, DatasetImage
from apps.generation.models import GenerationJob
from apps.generators.models import Generator, TrainingRun
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


# --- files people upload by mistake, built in memory ------------------------------------------


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB pixels: they do not compress, so the file size is predictable."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def text_renamed_jpg() -> bytes:
    return b"Shopping list: milk, eggs, bread.\n" * 10


def truncated_jpeg() -> bytes:
    data = encode(noise(64, 64, seed=1), "JPEG", quality=90)
    return data[: len(data) // 2]


def decompression_bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A small PNG whose header claims width x height pixels (400 MP, over the 50 MP cap)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 256))
        + chunk(b"IEND", b"")
    )


def big_png() -> bytes:
    """About 1.4 MB of incompressible pixels (over a 1 MB limit)."""
    return encode(noise(700, 700, seed=2), "PNG")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 24), colour) for colour in ("red", "blue", "green")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def svg() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><circle r="9"/></svg>'
    )


def zip_of(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry, data in entries:
            if isinstance(entry, zipfile.ZipInfo):
                entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return buffer.getvalue()


def symlink_member(name: str, target: bytes = b"/etc/passwd") -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so the mode bits in external_attr count
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def zip_bomb_member() -> tuple[str, bytes]:
    return "bomb.png", b"\x00" * (8 * MB)  # deflates about 1000 times


# --- the two ways in --------------------------------------------------------------------------

Named = tuple[str, bytes]


@dataclass
class Outcome:
    """What a user got back: HTTP status, the messages shown to them, and whether a dataset was made."""

    status: int
    feedback: str  # error and warning texts (JSON values, or the page's error lists and messages)
    redirected_to: str = ""


def uploads(named: list[Named]) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(name, data, content_type="application/octet-stream") for name, data in named]


def page_feedback(content: bytes) -> str:
    """The text of the error lists, error boxes and flash messages of a page, unescaped."""
    page = content.decode()
    pieces = re.findall(r'<ul class="errorlist[^"]*"[^>]*>.*?</ul>', page, flags=re.S)
    pieces += re.findall(r'<p class="message[^"]*"[^>]*>.*?</p>', page, flags=re.S)
    pieces += re.findall(r'<div class="error"[^>]*>.*?</div>', page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", " ".join(pieces)))


class ApiWay:
    name = "api"

    def __init__(self, api):
        self.api = api

    def upload(self, files: list[Named], archive: Named | None = None) -> Outcome:
        body: dict = {"name": "catalogue"}
        if files:
            body["images"] = uploads(files)
        if archive:
            body["archive"] = uploads([archive])[0]
        response = self.api.post("/api/datasets/", body, format="multipart")
        return Outcome(response.status_code, response.content.decode())


class WebWay:
    """The training wizard in a logged-in browser session that sends CSRF tokens like a real one."""

    name = "web"

    def __init__(self, user, step1: dict | None = None):
        self.client = Client(enforce_csrf_checks=True)
        self.client.force_login(user)
        self.step1 = step1 or {
            "name": "catalogue",
            "kind": "dcgan",
            "resolution": "32",
            "preset": "quick",
            "shared": "on",
        }

    def token(self, url: str) -> str:
        assert self.client.get(url).status_code == 200
        return self.client.cookies["csrftoken"].value

    def start(self) -> Outcome:
        response = self.client.post(
            "/generators/new/", {**self.step1, "csrfmiddlewaretoken": self.token("/generators/new/")}
        )
        return Outcome(response.status_code, page_feedback(response.content), response.get("Location", ""))

    def post_step2(self, body: dict) -> Outcome:
        assert self.start().redirected_to.endswith("/generators/new/images/")
        body = {**body, "csrfmiddlewaretoken": self.token("/generators/new/images/")}
        response = self.client.post("/generators/new/images/", body)
        if response.status_code == 302:
            landing = self.client.get(response["Location"])  # the run page shows the skipped files
            return Outcome(302, page_feedback(landing.content), response["Location"])
        return Outcome(response.status_code, page_feedback(response.content))

    def upload(self, files: list[Named], archive: Named | None = None) -> Outcome:
        body: dict = {}
        if files:
            body["images"] = uploads(files)
        if archive:
            body["archive"] = uploads([archive])[0]
        return self.post_step2(body)


@pytest.fixture(params=["api", "web"])
def way(request, api, user):
    return ApiWay(api) if request.param == "api" else WebWay(user)


def refused(outcome: Outcome) -> bool:
    """The API answers 400; the wizard shows its page again with the errors (or Django's 400)."""
    return outcome.status == 400 or (outcome.status == 200 and outcome.feedback.strip() != "")


# --- what is stored ---------------------------------------------------------------------------


def media_files(settings) -> dict[str, str]:
    """Every file under MEDIA_ROOT: relative path -> sha256 of its bytes."""
    root = settings.MEDIA_ROOT
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@dataclass
class Snapshot:
    datasets: set
    images: set
    files: dict[str, str]
    generators: int
    runs: int

    @classmethod
    def take(cls, settings) -> Snapshot:
        return cls(
            datasets=set(Dataset.objects.values_list("id", "owner_id", "name")),
            images=set(DatasetImage.objects.values_list("id", "dataset_id", "sha256", "original", "working")),
            files=media_files(settings),
            generators=Generator.objects.count(),
            runs=TrainingRun.objects.count(),
        )


@pytest.fixture
def existing(user, settings):
    """A dataset of four good images that the user uploaded before; no bad request may touch it."""
    dataset, rejected = dataset_services.create_dataset(
        owner=user, name="earlier upload", files=uploads([(f"old{i}.png", png_bytes(900 + i)) for i in range(4)])
    )
    assert rejected == [] and dataset.images.count() == 4
    return dataset


def assert_nothing_stored(before: Snapshot, settings) -> None:
    after = Snapshot.take(settings)
    assert after.datasets == before.datasets, "a refused request left a dataset behind"
    assert after.images == before.images, "a refused request left image rows behind"
    assert after.files == before.files, "a refused request left or changed files under MEDIA_ROOT"
    assert (after.generators, after.runs) == (before.generators, before.runs)


def assert_existing_untouched(existing: Dataset, before: Snapshot, settings) -> None:
    rows = {row for row in before.images if row[1] == existing.pk}
    now = set(
        DatasetImage.objects.filter(dataset=existing).values_list("id", "dataset_id", "sha256", "original", "working")
    )
    assert now == rows and len(rows) == 4
    files = media_files(settings)
    for _, _, _, original, working in rows:
        assert files[original] == before.files[original] and files[working] == before.files[working]


def good_images(count: int = 4, start: int = 0) -> list[Named]:
    return [(f"good{start + i}.png", png_bytes(start + i)) for i in range(count)]


# --- the catalogue ----------------------------------------------------------------------------


@dataclass
class Case:
    """One kind of bad upload.

    ``build(good)`` returns (files, archive) for an upload that also carries the given good images.
    ``per_file``: only the bad item is refused and the good images are kept; otherwise the whole
    request is refused. ``says``: what the message must contain (per way when they differ).
    """

    id: str
    build: Callable[[list[Named]], tuple[list[Named], Named | None]]
    says: str | dict[str, str]
    per_file: bool = True
    settings: dict = field(default_factory=dict)

    def message(self, way: str) -> str:
        return self.says[way] if isinstance(self.says, dict) else self.says


def bad_file(name: str, make: Callable[[], bytes]):
    return lambda good: ([*good, (name, make())], None)


def bad_member(entry: Callable[[], tuple]):
    return lambda good: ([], ("photos.zip", zip_of([*[(f"photos/{n}", d) for n, d in good], entry()])))


def bad_archive(make: Callable[[list[Named]], bytes]):
    return lambda good: (good, ("photos.zip", make(good)))


def too_many_files(count: int):
    return lambda good: (good_images(count, start=50), None)


def nested_zip() -> tuple[str, bytes]:
    return "more/inner.zip", zip_of([("x.png", png_bytes(77))])


CASES = [
    Case("text-renamed-jpg", bad_file("notes.jpg", text_renamed_jpg), "notes.jpg looks like text"),
    Case("truncated-jpeg", bad_file("cut.jpg", truncated_jpeg), "truncated JPEG: cut.jpg"),
    # Django's form field refuses an empty file before the upload service sees it (see test below).
    Case(
        "empty-file",
        bad_file("empty.png", lambda: b""),
        {"api": "empty file: empty.png has 0 bytes", "web": "The submitted file is empty"},
    ),
    Case("decompression-bomb", bad_file("huge.png", decompression_bomb_png), "too large: huge.png has 400 MP"),
    Case(
        "over-size-limit",
        bad_file("big.png", big_png),
        "file over 1 MB: big.png",
        settings={"SYNTHGEN_MAX_FILE_BYTES": 1 * MB},
    ),
    Case("animated-gif", bad_file("moving.gif", animated_gif), "animated GIF: moving.gif has several frames"),
    Case("svg", bad_file("logo.svg", svg), "SVG is not accepted: logo.svg"),
    Case("zip-dotdot-path", bad_member(lambda: ("../../escape.png", png_bytes(60))), "path leaves the zip's folder"),
    Case("zip-absolute-path", bad_member(lambda: ("/tmp/abs.png", png_bytes(61))), "absolute path in the zip"),
    Case("zip-symlink", bad_member(lambda: symlink_member("photos/link.png")), "symbolic link"),
    Case("zip-in-zip", bad_member(nested_zip), "zip inside a zip"),
    Case(
        "zip-bomb",
        bad_archive(lambda good: zip_of([*good, zip_bomb_member()])),
        "zip bomb suspected: bomb.png",
        per_file=False,
    ),
    Case(
        "zip-too-many-members",
        bad_archive(lambda good: zip_of([*good, *good_images(5, start=20)])),
        "over the 3 limit",
        per_file=False,
        settings={"SYNTHGEN_MAX_ZIP_MEMBERS": 3},
    ),
    Case(
        "zip-too-big-unpacked",
        bad_archive(lambda good: zip_of([(f"n{i}.png", encode(noise(60, 60, i), "PNG")) for i in range(3)])),
        "zip unpacks to",
        per_file=False,
        settings={"SYNTHGEN_MAX_ZIP_TOTAL_BYTES": 20_000},
    ),
    Case("archive-not-a-zip", bad_archive(lambda good: png_bytes(62)), "not a zip archive", per_file=False),
    Case(
        "files-over-per-request-cap",
        too_many_files(4),
        "4 files in one upload is over the limit of 3",
        per_file=False,
        settings={"SYNTHGEN_MAX_FILES_PER_REQUEST": 3, "DATA_UPLOAD_MAX_NUMBER_FILES": 4},
    ),
]


def apply(settings, overrides: dict) -> None:
    for name, value in overrides.items():
        setattr(settings, name, value)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_upload_alone_is_refused_and_nothing_is_stored(case, way, existing, settings):
    apply(settings, case.settings)
    files, archive = case.build([])
    before = Snapshot.take(settings)
    outcome = way.upload(files, archive)
    assert refused(outcome), outcome
    if way.name == "api":
        assert outcome.status == 400
    assert case.message(way.name) in outcome.feedback, outcome.feedback
    assert_nothing_stored(before, settings)
    assert_existing_untouched(existing, before, settings)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_upload_among_good_images(case, way, existing, settings):
    """A bad file is listed with its reason and the good ones are kept; a bad archive or too many
    files refuses the whole request, including the good files that were stored before it was read."""
    apply(settings, case.settings)
    good = good_images(4)
    files, archive = case.build(good)
    before = Snapshot.take(settings)
    outcome = way.upload(files, archive)
    assert case.message(way.name) in outcome.feedback, outcome.feedback
    if not case.per_file or (way.name == "web" and case.id == "empty-file"):
        assert refused(outcome), outcome
        assert_nothing_stored(before, settings)
    else:
        assert outcome.status == (201 if way.name == "api" else 302), outcome
        new = Dataset.objects.exclude(pk__in=[row[0] for row in before.datasets]).get()
        stored = sorted(DatasetImage.objects.filter(dataset=new).values_list("sha256", flat=True))
        assert stored == sorted(hashlib.sha256(data).hexdigest() for _, data in good)
        files_now = media_files(settings)
        assert len(files_now) == len(before.files) + 2 * len(good)  # an original and a working copy each
    assert_existing_untouched(existing, before, settings)


def test_empty_file_makes_the_web_form_refuse_the_whole_upload(user, settings):
    """Known difference: the API keeps the good files and lists the empty one; the wizard's form field
    (Django's FileField) refuses the whole post and says which problem to fix."""
    outcome = WebWay(user).upload([*good_images(4), ("empty.png", b"")])
    assert outcome.status == 200 and "The submitted file is empty" in outcome.feedback
    assert not Dataset.objects.exists()


# --- far more files than Django's own cap ----------------------------------------------------


def test_far_too_many_files_get_a_clear_400_from_the_api(api, existing, settings):
    settings.SYNTHGEN_MAX_FILES_PER_REQUEST = 3
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 4
    before = Snapshot.take(settings)
    response = api.post("/api/datasets/", {"name": "many", "images": uploads(good_images(9))}, format="multipart")
    assert response.status_code == 400, response.content
    assert "at most 3 images (plus one zip) per request" in response.json()["images"][0]
    assert_nothing_stored(before, settings)
    assert_existing_untouched(existing, before, settings)


def test_far_too_many_files_over_session_auth_get_a_clear_400(client, user, settings):
    """With session auth the upload is parsed while CSRF is checked: the same clear 400 comes back."""
    settings.SYNTHGEN_MAX_FILES_PER_REQUEST = 3
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 4
    client.force_login(user)
    response = client.post("/api/datasets/", {"name": "many", "images": uploads(good_images(9))})
    assert response.status_code == 400, response.content
    assert "per request" in response.json()["images"][0]
    assert not Dataset.objects.exists()


def test_far_too_many_files_are_a_400_not_a_500_in_the_wizard(user, existing, settings):
    settings.SYNTHGEN_MAX_FILES_PER_REQUEST = 3
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 4
    before = Snapshot.take(settings)
    outcome = WebWay(user).upload(good_images(9))
    assert outcome.status == 400
    assert_nothing_stored(before, settings)
    assert_existing_untouched(existing, before, settings)


def test_a_full_request_of_images_plus_a_zip_is_within_the_caps(api, settings):
    """The per-request cap counts image files; one zip may come with them (Django's cap is cap + 1)."""
    settings.SYNTHGEN_MAX_FILES_PER_REQUEST = 3
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 4  # what base.py derives from the cap
    archive = ("more.zip", zip_of(good_images(2, start=30)))
    response = api.post(
        "/api/datasets/",
        {"name": "full", "images": uploads(good_images(3)), "archive": uploads([archive])[0]},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["image_count"] == 5


def test_default_caps_leave_room_for_the_zip():
    from django.conf import settings

    assert settings.DATA_UPLOAD_MAX_NUMBER_FILES == settings.SYNTHGEN_MAX_FILES_PER_REQUEST + 1


# --- unusual but valid images: accepted and normalised ----------------------------------------


def png_16bit() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (32, 1))
    image = Image.fromarray(ramp)
    assert image.mode.startswith("I;16")
    return encode(image, "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)  # red


def palette_png() -> bytes:
    image = Image.new("P", (32, 32), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # 0: (transparent) black, 1: blue
    image.paste(1, (16, 0, 32, 32))
    return encode(image, "PNG", transparency=0)


def gray_alpha_png() -> bytes:
    image = Image.new("LA", (32, 32), (0, 0))  # left half: transparent black
    image.paste((50, 255), (16, 0, 32, 32))  # right half: opaque dark grey
    return encode(image, "PNG")


def exif_rotated_jpeg() -> bytes:
    """Stored 40 wide x 20 high with a red square at the top left; EXIF says: turn 90 degrees clockwise."""
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def near(pixel, expected, tolerance=24) -> bool:
    pixel = pixel if isinstance(pixel, tuple) else (pixel,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


NORMALISED = {
    # name: (bytes, stored mode, displayed (width, height), {working pixel: expected value})
    "16bit.png": (png_16bit, "L", (32, 32), {(0, 5): 0, (31, 5): 255}),
    "cmyk.jpg": (cmyk_jpeg, "RGB", (32, 32), {(16, 16): (255, 0, 0)}),
    "palette.png": (palette_png, "RGB", (32, 32), {(4, 4): (255, 255, 255), (24, 4): (0, 0, 255)}),
    "gray-alpha.png": (gray_alpha_png, "L", (32, 32), {(4, 4): 255, (24, 4): 50}),
    "exif-rotated.jpg": (exif_rotated_jpeg, "RGB", (20, 40), {(14, 5): (255, 0, 0), (5, 5): (255, 255, 255)}),
}


@pytest.mark.parametrize("name", NORMALISED)
def test_unusual_images_are_accepted_and_normalised(name, way, settings):
    settings.SYNTHGEN_MIN_TRAINING_IMAGES = 1
    make, mode, (width, height), pixels = NORMALISED[name]
    outcome = way.upload([(name, make())])
    assert outcome.status == (201 if way.name == "api" else 302), outcome
    image = DatasetImage.objects.get()
    assert (image.mode, image.width, image.height) == (mode, width, height)
    with Image.open(settings.MEDIA_ROOT / image.working.name) as working:
        assert working.format == "PNG" and working.mode == mode and working.size == (width, height)
        for xy, expected in pixels.items():
            assert near(working.getpixel(xy), expected), (xy, working.getpixel(xy), expected)


# --- adding to a dataset that exists ----------------------------------------------------------


def test_a_bad_zip_added_to_an_existing_dataset_leaves_it_as_it_was(api, existing, settings):
    before = Snapshot.take(settings)
    bomb = ("more.zip", zip_of([*good_images(2, start=40), zip_bomb_member()]))
    response = api.post(
        f"/api/datasets/{existing.pk}/images/",
        {"images": uploads(good_images(2, start=45)), "archive": uploads([bomb])[0]},
        format="multipart",
    )
    assert response.status_code == 400 and "zip bomb suspected" in response.json()["archive"][0]
    assert_nothing_stored(before, settings)
    assert_existing_untouched(existing, before, settings)


def test_duplicates_and_bad_files_added_to_an_existing_dataset_are_listed(api, existing, settings):
    before = Snapshot.take(settings)
    again = ("again.png", png_bytes(900))  # the same bytes as old0.png
    response = api.post(
        f"/api/datasets/{existing.pk}/images/",
        {"images": uploads([again, ("notes.jpg", text_renamed_jpg()), *good_images(1, start=70)])},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    reasons = {r["file"]: r["reason"] for r in response.json()["rejected"]}
    assert reasons.keys() == {"again.png", "notes.jpg"} and "duplicate" in reasons["again.png"]
    assert response.json()["image_count"] == 5
    files_now = media_files(settings)
    for row in before.images:  # the dataset grew by one image; the four it had are as they were
        assert DatasetImage.objects.filter(pk=row[0], sha256=row[2], original=row[3], working=row[4]).exists()
        assert files_now[row[3]] == before.files[row[3]] and files_now[row[4]] == before.files[row[4]]


def test_adding_to_someone_elses_dataset_is_a_404(other_api, existing, settings):
    before = Snapshot.take(settings)
    response = other_api.post(
        f"/api/datasets/{existing.pk}/images/", {"images": uploads(good_images(1))}, format="multipart"
    )
    assert response.status_code == 404
    assert_nothing_stored(before, settings)


# --- training requests ------------------------------------------------------------------------


def test_too_few_images_are_refused_before_the_run_starts_api(api, user, settings):
    settings.SYNTHGEN_MIN_TRAINING_IMAGES = 5
    dataset, _ = dataset_services.create_dataset(owner=user, name="three", files=uploads(good_images(3)))
    response = api.post("/api/generators/", {"name": "g", "dataset": dataset.pk, "kind": "dcgan"}, format="json")
    assert response.status_code == 400
    assert "This dataset has 3 images; training needs at least 5" in response.json()["dataset"][0]
    assert not Generator.objects.exists() and not TrainingRun.objects.exists()


def test_too_few_images_are_refused_before_the_run_starts_web(user, settings):
    """The wizard keeps the uploaded images as a dataset (as its JavaScript upload does) but starts nothing."""
    settings.SYNTHGEN_MIN_TRAINING_IMAGES = 5
    outcome = WebWay(user).upload(good_images(3))
    assert outcome.status == 200
    assert "This dataset has 3 images; training needs at least 5" in outcome.feedback
    assert not Generator.objects.exists() and not TrainingRun.objects.exists()


BAD_SETTINGS = {
    "unknown-kind": ({"kind": "stylegan9"}, "kind"),
    "unknown-resolution": ({"resolution": 48}, "resolution"),
    "unknown-preset": ({"preset": "forever"}, "preset"),
    "empty-name": ({"name": ""}, "name"),
}


@pytest.mark.parametrize("bad", BAD_SETTINGS, ids=list(BAD_SETTINGS))
def test_unknown_generator_settings_are_refused_by_the_api(bad, api, existing):
    change, field_name = BAD_SETTINGS[bad]
    body = {"name": "g", "dataset": existing.pk, "kind": "dcgan", "resolution": 32, **change}
    response = api.post("/api/generators/", body, format="json")
    assert response.status_code == 400 and field_name in response.json(), response.content
    assert not Generator.objects.exists()


@pytest.mark.parametrize("bad", BAD_SETTINGS, ids=list(BAD_SETTINGS))
def test_unknown_generator_settings_are_refused_by_the_wizard(bad, user):
    change, field_name = BAD_SETTINGS[bad]
    web = WebWay(user)
    web.step1 = {**web.step1, **change}
    outcome = web.start()
    assert outcome.status == 200 and outcome.feedback.strip(), outcome  # the form again, with the error
    assert web.client.get("/generators/new/images/").status_code == 302  # step 2 is not open yet
    assert not Generator.objects.exists()


@pytest.mark.parametrize("dataset_id", ["missing", "foreign", "not-a-number"])
def test_missing_or_foreign_dataset_ids_are_refused(dataset_id, api, user, other_user):
    theirs, _ = dataset_services.create_dataset(owner=other_user, name="bob's", files=uploads(good_images(4)))
    value = {"missing": theirs.pk + 1000, "foreign": theirs.pk, "not-a-number": "abc"}[dataset_id]
    response = api.post("/api/generators/", {"name": "g", "dataset": value, "kind": "dcgan"}, format="json")
    assert response.status_code == 400 and "dataset" in response.json()
    if dataset_id != "not-a-number":  # a foreign id reads exactly like a missing one: no existence oracle
        assert "does not exist" in response.json()["dataset"][0]
    outcome = WebWay(user).post_step2({"dataset": str(value)})
    assert outcome.status == 200 and "That dataset does not exist" in outcome.feedback
    assert not Generator.objects.exists()
    assert Dataset.objects.get().owner == other_user  # and nothing was made for the user


# --- generation requests ----------------------------------------------------------------------


@pytest.fixture
def ready_generator(user):
    return Generator.objects.create(
        owner=user, name="ready", kind="dcgan", resolution=32, preset="quick", status=Generator.Status.READY
    )


WEB_COUNT_ERRORS = {
    "0": "greater than or equal to 1",
    "-1": "greater than or equal to 1",
    "10000000": "less than or equal to 10000",
    "many": "Enter a whole number",
    "2.5": "Enter a whole number",
    "None": "This field is required",
}


@pytest.mark.parametrize("count", [0, -1, 10_000_000, "many", 2.5, None])
def test_impossible_generation_counts_are_refused(count, api, user, ready_generator):
    body = {"count": count} if count is not None else {}
    response = api.post(f"/api/generators/{ready_generator.pk}/generate/", body, format="json")
    assert response.status_code == 400 and "count" in response.json(), response.content
    web = WebWay(user)
    page = f"/generators/{ready_generator.pk}/"
    response = web.client.post(
        f"/jobs/new/{ready_generator.pk}/",
        {"count": "" if count is None else count, "csrfmiddlewaretoken": web.token(page)},
    )
    assert response.status_code == 200, response.status_code  # the page again, with the form's error
    assert WEB_COUNT_ERRORS[str(count)] in page_feedback(response.content), page_feedback(response.content)
    assert not GenerationJob.objects.exists()


def test_generation_from_a_generator_that_is_not_ready_is_refused(api, user):
    training = Generator.objects.create(
        owner=user, name="busy", kind="dcgan", resolution=32, preset="quick", status=Generator.Status.TRAINING
    )
    response = api.post(f"/api/generators/{training.pk}/generate/", {"count": 5}, format="json")
    assert response.status_code == 400 and "only a ready generator" in response.json()["generator"][0]
    assert not GenerationJob.objects.exists()


def test_sampling_steps_for_a_type_without_them_are_refused(api, ready_generator):
    response = api.post(f"/api/generators/{ready_generator.pk}/generate/", {"count": 5, "steps": 50}, format="json")
    assert response.status_code == 400 and "steps" in response.json()
    assert not GenerationJob.objects.exists()


def test_generation_from_a_missing_generator_is_a_404(api, ready_generator):
    response = api.post(f"/api/generators/{ready_generator.pk + 99}/generate/", {"count": 5}, format="json")
    assert response.status_code == 404
    assert not GenerationJob.objects.exists()
