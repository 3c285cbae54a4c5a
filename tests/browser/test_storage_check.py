"""A generator whose weights were lost from storage, as its owner sees it after `check_storage --repair`: its page
and the registry say "broken: weights missing" and say what to do; nothing on the page fails."""

from __future__ import annotations

import pytest

from apps.core import storage
from apps.generators.models import Generator
from tests.browser.pages import PASSWORD, log_in, shot
from tests.factories import check_storage_command, train, upload_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_generator_whose_weights_are_gone_says_so_on_its_pages(
    page, live_server, api, django_capture_on_commit_callbacks
):
    dataset_id = upload_dataset(api, "ellipses", count=6)
    generator = train(api, django_capture_on_commit_callbacks, name="ellipses", dataset=dataset_id, kind="dcgan")
    files_dir = Generator.objects.get(pk=generator["id"]).files_dir
    storage.delete(storage.in_folder(files_dir, "weights.safetensors"))
    status, out, _ = check_storage_command("--repair")
    assert status == 1 and "weights.safetensors missing" in out

    log_in(page, "alice", PASSWORD)
    page.goto(f"/generators/{generator['id']}/")
    assert page.locator("h1 small").inner_text() == "broken: weights missing"
    message = page.locator("#broken").inner_text()
    assert "no longer in the storage" in message and "Train it again" in message
    assert page.watch.errors == [] and page.watch.foreign == []
    shot(page, "30-generator-broken")
    page.goto("/generators/")
    assert "broken: weights missing" in page.locator("table").inner_text()
