"""The web app in real headless Chromium, against a live server and a real Celery worker.

Log in, go through the two-step wizard dropping a small set of generated PNGs on the upload zone,
start a tiny run, watch the run page reach done without reloading, generate on the generator page,
download the zip and check it. Every page is saved under test-artifacts/screenshots/, also at
phone width (390 px), where no page may scroll sideways.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from PIL import Image

from apps.datasets import services as dataset_services
from apps.generators.models import Generator, TrainingRun
from tests.browser.pages import PASSWORD, PHONE, Watch, drop, log_in, shot
from tests.factories import image_uploads, png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def wait_for_images(page, selector: str) -> None:
    """Wait until every image matching ``selector`` has loaded (and is a real picture)."""
    page.wait_for_function(
        "(s) => { const all = Array.from(document.querySelectorAll(s));"
        " return all.length > 0 && all.every((i) => i.complete && i.naturalWidth > 0); }",
        arg=selector,
    )


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_train_watch_generate_and_download_in_the_browser(page, browser_context, chromium, live_server, worker, user):
    page.goto("/")
    shot(page, "01-home-logged-out")
    log_in(page, "alice", PASSWORD)
    shot(page, "02-home")

    # Step 1: settings.
    page.get_by_role("link", name="Train a generator").first.click()
    page.get_by_label("Name", exact=True).fill("ellipses")
    page.get_by_label(re.compile("DCGAN")).check()
    page.get_by_label("Image size").select_option("32")
    page.get_by_label(re.compile("Quick: a first look")).check()
    shot(page, "03-wizard-settings")
    page.get_by_role("button", name="Next: images").click()
    page.wait_for_url("**/generators/new/images/")

    # Step 2: drop ten images, choose one bad file; each gets a progress bar and a verdict.
    good = [(f"ellipse{i}.png", png_bytes(i), "image/png") for i in range(10)]
    drop(page, "#dropzone", good)
    page.set_input_files(
        "input[name=images]",
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"meeting notes, not a picture\n" * 10}],
    )
    summary = page.locator("#upload-summary")
    summary.filter(has_text="Upload finished").wait_for()
    assert summary.inner_text() == "Upload finished: 10 images added, 1 not used (reasons below)."
    assert page.locator(".upload-item.done").count() == 10
    rejected = page.locator(".upload-item.rejected")
    assert rejected.count() == 1 and "notes.png" in rejected.inner_text() and "not an image" in rejected.inner_text()
    assert page.evaluate("Array.from(document.querySelectorAll('.upload-item progress')).every(p => p.value === 1)")
    # The review: warnings, thumbnails of the uploaded set and the augmentation preview.
    page.locator("#dataset-review .review").wait_for()
    assert "Only 10 images" in page.locator("#dataset-review .warnings").inner_text()
    assert page.locator("#dataset-review .thumbs img").count() == 10
    page.locator("#dataset-review img.preview").scroll_into_view_if_needed()
    wait_for_images(page, "#dataset-review img.preview")
    wait_for_images(page, "#dataset-review .thumbs img")
    shot(page, "04-wizard-images")
    page.get_by_role("button", name="Start training").click()

    # The run page updates itself until done: no reload (the marker set on the page survives).
    page.wait_for_url(re.compile(r"/generators/runs/\d+/$"))
    page.evaluate("window.stillTheSamePage = true")
    shot(page, "05-run-started")
    page.locator("#run-status", has_text="done").wait_for(timeout=150_000)
    assert page.evaluate("window.stillTheSamePage") is True
    page.locator("#run-grid").wait_for()
    assert page.locator("#loss-chart polyline.loss-line").count() == 2  # discriminator and generator
    assert page.locator("#cancel-form").is_hidden()
    run = TrainingRun.objects.get()
    assert page.locator("#run-steps").inner_text() == f"step {run.total_steps} of {run.total_steps}"
    shot(page, "06-run-done")

    # The generator page: samples, facts, share toggle, generate.
    page.get_by_role("link", name="Generate images").click()
    wait_for_images(page, "#sample-grid")
    assert page.locator("#owner").inner_text().startswith("alice (you)")
    page.get_by_role("button", name="Make private").click()
    assert page.locator("#visibility").inner_text() == "only you (private)"
    assert Generator.objects.get().shared is False
    page.get_by_role("button", name="Share with every user").click()
    assert page.locator("#visibility").inner_text() == "every user (shared)"
    shot(page, "07-generator")
    page.get_by_label("How many images").fill("6")
    page.get_by_label("Seed (optional)").fill("7")
    page.get_by_label("Leave out unusable images").uncheck()  # a 6-step model makes noise; keep it all
    page.get_by_role("button", name="Generate").click()

    # The job page shows progress, then the gallery and the zip, without reloading.
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    job_path = page.url.replace(live_server.url, "")
    page.evaluate("window.stillTheSamePage = true")
    page.locator("#gallery img").nth(5).wait_for(timeout=60_000)
    assert page.locator("#gallery img").count() == 6
    assert page.evaluate("window.stillTheSamePage") is True
    wait_for_images(page, "#gallery img")
    shot(page, "08-job-done")
    with page.expect_download() as download_info:
        page.locator("#download-zip").click()
    archive = zipfile.ZipFile(download_info.value.path())
    pngs = sorted(n for n in archive.namelist() if n.endswith(".png"))
    assert pngs == [f"ellipses/{i:06d}.png" for i in range(1, 7)]
    assert all(Image.open(io.BytesIO(archive.read(n))).size == (32, 32) for n in pngs)
    manifest = json.loads(archive.read("ellipses/manifest.json"))
    assert manifest["job"]["seed"] == 7 and manifest["generator"]["name"] == "ellipses"

    # The other pages, and the API docs served without any CDN.
    for name, url in (("09-generators", "/generators/"), ("10-datasets", "/datasets/")):
        page.goto(url)
        shot(page, name)
    page.get_by_role("link", name="ellipses").click()
    wait_for_images(page, "img.preview, .thumbs img")
    shot(page, "11-dataset")
    page.goto("/api/docs/")
    page.locator(".swagger-ui .opblock").first.wait_for()
    shot(page, "12-api-docs")
    assert page.watch.problems() == []  # no JavaScript error, nothing loaded from a CDN

    # Phone width: every page fits, nothing scrolls sideways.
    phone = chromium.new_context(
        viewport=PHONE,
        storage_state=browser_context.storage_state(),
        base_url=live_server.url,
        is_mobile=True,
        has_touch=True,
    )
    phone_page = phone.new_page()
    watch = Watch(phone_page, live_server.url)
    pages = {
        "home": "/",
        "wizard": "/generators/new/",
        "run": f"/generators/runs/{run.pk}/",
        "generator": f"/generators/{run.generator_id}/",
        "job": job_path,
        "datasets": "/datasets/",
        "generators": "/generators/",
    }
    for name, url in pages.items():
        phone_page.goto(url)
        phone_page.wait_for_load_state("networkidle")
        shot(phone_page, f"phone-{name}")
        assert no_sideways_scroll(phone_page), f"{name} page scrolls sideways at {PHONE['width']} px"
    # The upload step too, with the review of the dataset uploaded above.
    phone_page.goto("/generators/new/")
    phone_page.get_by_label("Name", exact=True).fill("more ellipses")
    phone_page.get_by_role("button", name="Next: images").click()
    phone_page.wait_for_url("**/generators/new/images/")
    phone_page.get_by_label("…or train on a dataset you uploaded before").select_option(label="ellipses (10 images)")
    phone_page.locator(".thumbs img").last.scroll_into_view_if_needed()  # thumbnails load lazily, when seen
    wait_for_images(phone_page, "img.preview, .thumbs img")
    shot(phone_page, "phone-wizard-images")
    assert no_sideways_scroll(phone_page), "the upload step scrolls sideways"
    phone.close()
    assert watch.problems() == []


def test_cancel_a_queued_run_in_the_browser(page, live_server, real_broker, user):  # noqa: F811
    """No worker runs here, so the run stays queued until Cancel is pressed."""
    dataset_services.create_dataset(owner=user, name="earlier upload", files=image_uploads(6))
    log_in(page, "alice", PASSWORD)
    page.goto("/generators/new/")
    page.get_by_label("Name", exact=True).fill("to cancel")
    page.get_by_role("button", name="Next: images").click()
    page.wait_for_url("**/generators/new/images/")
    page.get_by_label("…or train on a dataset you uploaded before").select_option(label="earlier upload (6 images)")
    page.locator("#dataset-review .review").wait_for()
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(r"/generators/runs/\d+/$"))
    assert page.locator("#run-status").inner_text() == "queued"
    shot(page, "13-run-queued")
    page.get_by_role("button", name="Cancel training").click()
    page.locator("#run-status", has_text="cancelled").wait_for()
    assert "Training cancelled." in page.locator(".message").inner_text()
    assert page.locator("#run-over-text").inner_text() == "Training was cancelled."
    assert page.locator("#cancel-form").count() == 0
    assert TrainingRun.objects.get().status == "cancelled"
    shot(page, "14-run-cancelled")


def test_upload_of_only_unusable_files_says_why_and_blocks_training(page, live_server, user):
    log_in(page, "alice", PASSWORD)
    page.goto("/generators/new/")
    page.get_by_label("Name", exact=True).fill("nothing good")
    page.get_by_role("button", name="Next: images").click()
    page.wait_for_url("**/generators/new/images/")
    drop(
        page,
        "#dropzone",
        [("scan.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"), ("empty.png", b"", "image/png")],
    )
    page.locator("#upload-summary", has_text="Upload finished").wait_for()
    rows = page.locator(".upload-item.rejected")
    assert rows.count() == 2
    assert "SVG is not accepted" in rows.nth(0).inner_text() and "export it as PNG" in rows.nth(0).inner_text()
    assert "empty file" in rows.nth(1).inner_text()
    # Nothing to train on: the button stays off, and the page says why.
    assert page.get_by_role("button", name="Start training").is_disabled()
    assert "Add images first" in page.locator("#start-hint").inner_text()
    assert page.url.endswith("/generators/new/images/")
    shot(page, "15-upload-rejected")

    # A zip then creates the dataset; its unusable member is listed with the others.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(3):
            archive.writestr(f"photos/p{i}.png", png_bytes(20 + i))
        archive.writestr("photos/readme.txt", "not a picture")
    drop(page, "#dropzone", [("photos.zip", buffer.getvalue(), "application/zip")])
    page.locator(".upload-item.done", has_text="photos.zip").wait_for()
    assert "zip: 3 images added, 1 file in it not used" in page.locator(".upload-item.done").inner_text()
    assert rows.count() == 3 and "photos/readme.txt" in rows.nth(2).inner_text()
    page.locator("#dataset-review .review", has_text="3 images").wait_for()
    # Too few to train on (the tests need 4): the server says so, and keeps the dataset chosen.
    page.get_by_role("button", name="Start training").click()
    page.locator("#form-errors").wait_for()
    assert "This dataset has 3 images; training needs at least 4" in page.locator("#form-errors").inner_text()
    page.locator("#dataset-review .review", has_text="3 images").wait_for()
    shot(page, "16-too-few-images")


def test_progress_bar_moves_while_a_large_file_uploads(page, live_server, user):
    """On a slow connection (Chromium's network emulation) the file's bar shows partial progress."""
    import numpy as np

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")  # noise does not compress: about 1 MB
    log_in(page, "alice", PASSWORD)
    page.goto("/generators/new/")
    page.get_by_label("Name", exact=True).fill("noise")
    page.get_by_role("button", name="Next: images").click()
    page.wait_for_url("**/generators/new/images/")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 400 * 1024},
    )
    drop(page, "#dropzone", [("noise.png", buffer.getvalue(), "image/png")])
    seen = set()
    for _ in range(200):
        seen.add(round(page.evaluate("document.querySelector('.upload-item progress').value"), 2))
        if page.locator(".upload-item.done").count():
            break
        page.wait_for_timeout(50)
    assert page.locator(".upload-item.done").count() == 1
    assert any(0 < value < 1 for value in seen), sorted(seen)
    shot(page, "17-upload-large-file")
