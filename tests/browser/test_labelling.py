"""Issue #21 in headless Chromium: a zip with a folder per class is never silently trained as one class.

What the user did: chose a zip with class folders before ticking anything. The page must then show the
classes it found with their counts and ask, keep Start training off until answered, and re-read the
stored dataset when the answer changes. Also: step 1's advanced box is empty, and the run page's loss
legend never says "loss loss".
"""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from apps.datasets.models import Dataset
from apps.generators.models import Generator, TrainingRun
from tests.browser.pages import PASSWORD, drop, log_in, shot
from tests.factories import png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

COUNTS = {"apple": 3, "banana": 2, "cherry": 4}


def class_folder_zip(root: str = "fruit/") -> bytes:
    buffer, seed = io.BytesIO(), 0
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, n in COUNTS.items():
            for i in range(n):
                archive.writestr(f"{root}{name}/{i}.png", png_bytes(seed))
                seed += 1
    return buffer.getvalue()


def to_step_two(page, name: str, kind: str = "DDIM") -> None:
    page.goto("/generators/new/")
    assert page.locator("textarea[name=options]").input_value() == ""  # not "null"
    assert "null" not in page.locator("details.advanced").inner_text()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label(re.compile(kind)).check()
    page.get_by_label("Image size").select_option("32")
    page.get_by_label(re.compile("Quick: a first look")).check()
    page.get_by_role("button", name="Next: images").click()
    page.wait_for_url("**/generators/new/images/")


def class_lines(page) -> list[str]:
    return [line.strip() for line in page.locator("#labelling .class-counts li").all_inner_texts()]


def test_a_class_folder_zip_chosen_first_is_asked_about_then_trained_labelled(page, live_server, real_broker, user):  # noqa: F811
    log_in(page, "alice", PASSWORD)
    to_step_two(page, "fruit")
    start = page.get_by_role("button", name="Start training")
    # The question comes before the drop zone; nothing is answered for the user.
    question_box = page.locator("#labelling-choice").bounding_box()
    assert question_box["y"] < page.locator("#dropzone").bounding_box()["y"]
    assert page.locator("input[name=labelling]:checked").count() == 0
    assert start.is_disabled()

    # What the user did: chose the zip straight away.
    drop(page, "#dropzone", [("fruit.zip", class_folder_zip(), "application/zip")])
    page.locator(".upload-item.done", has_text="fruit.zip").wait_for()
    box = page.locator("#labelling")
    box.wait_for()
    shot(page, "21-labelling-question")
    assert "One class, or a folder per class?" in box.inner_text()
    assert class_lines(page) == ["apple: 3 images", "banana: 2 images", "cherry: 4 images"]
    assert start.is_disabled()
    assert "one class, or a folder per class?" in page.locator("#start-hint").inner_text()
    dataset = Dataset.objects.get()
    assert dataset.labelled is False  # uploaded without an answer: one class, for now

    # The answer: the folders are classes. The stored dataset is read again, and training may start.
    page.get_by_role("button", name="Use the 3 folders as classes").click()
    box.filter(has_text="3 classes").wait_for()
    assert class_lines(page) == ["apple: 3 images", "banana: 2 images", "cherry: 4 images"]
    assert page.locator("input[name=labelling][value=classes]").is_checked()
    assert start.is_enabled()
    dataset.refresh_from_db()
    assert dataset.labelled is True and dataset.class_counts() == COUNTS

    # Changing the answer re-reads it again, both ways.
    page.get_by_label(re.compile("One class: every image")).check()
    box.filter(has_text="although the zip has 3 class folders").wait_for()
    assert Dataset.objects.get().labelled is False and start.is_enabled()
    page.get_by_label(re.compile("Several classes: my zip")).check()
    box.filter(has_text="3 classes").wait_for()
    assert Dataset.objects.get().labelled is True
    shot(page, "22-labelling-classes")

    start.click()
    page.wait_for_url(re.compile(r"/generators/runs/\d+/$"))
    generator = Generator.objects.get()
    assert generator.dataset.labelled is True and generator.kind == "ddim"

    # The run page's loss legend: a diffusion model's one loss, then a GAN's two; never "loss loss".
    run = TrainingRun.objects.get()
    TrainingRun.objects.filter(pk=run.pk).update(losses=[{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.7}])
    legend = page.locator("#loss-chart text", has_text="—")
    legend.first.wait_for()
    assert legend.all_text_contents() == ["— loss"]
    TrainingRun.objects.filter(pk=run.pk).update(
        losses=[{"step": 1, "d": 1.2, "g": 0.8}, {"step": 2, "d": 1.1, "g": 0.9}]
    )
    page.locator("#loss-chart text", has_text="discriminator").wait_for()
    assert legend.all_text_contents() == ["— discriminator loss", "— generator loss"]
    assert "loss loss" not in page.locator("#loss-chart").inner_html()
    shot(page, "23-run-loss-legend")


def test_one_class_chosen_first_is_kept_and_the_folders_are_still_shown(page, live_server, user):
    log_in(page, "alice", PASSWORD)
    to_step_two(page, "fruit mix", kind="DCGAN")
    page.get_by_label(re.compile("One class: every image")).check()
    drop(page, "#dropzone", [("fruit.zip", class_folder_zip(root=""), "application/zip")])
    box = page.locator("#labelling")
    box.filter(has_text="although the zip has 3 class folders").wait_for()
    assert class_lines(page) == ["apple: 3 images", "banana: 2 images", "cherry: 4 images"]
    assert page.get_by_role("button", name="Use the 3 folders as classes").is_visible()
    assert page.get_by_role("button", name="Start training").is_enabled()
    assert Dataset.objects.get().labelled is False

    # Loose files cannot carry classes: with "Several classes" chosen they are refused, saying why.
    page.goto("/generators/new/images/")
    page.get_by_label(re.compile("Several classes: my zip")).check()
    drop(page, "#dropzone", [("a.png", png_bytes(1), "image/png")])
    row = page.locator(".upload-item.rejected", has_text="a.png")
    row.wait_for()
    assert "loose images have no class" in row.inner_text()
    shot(page, "24-labelling-loose-files")
