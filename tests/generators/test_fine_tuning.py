"""Training from a base generator through the API (#20): the child starts from the base's weights with the
fine-tuning recipe, the refusals create nothing, and the lineage survives deleting the base. Tiny models, CPU,
the real pipeline (eager), PostgreSQL and files."""

import html

import pytest
import torch

from apps.core import storage
from apps.generators.models import Generator, TrainingRun
from apps.ml.dcgan import DCGAN
from apps.ml.ddim import DDIM
from apps.ml.ddim.config import FINE_TUNE_LR, DDIMConfig
from apps.ml.engine.transfer import LABEL_EMBED
from tests.factories import image_uploads, token_client, train, upload_dataset

pytestmark = pytest.mark.django_db


def weights(generator_id: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    files_dir = Generator.objects.get(pk=generator_id).files_dir
    return load(storage.read_bytes(f"{files_dir}/weights.safetensors"))


def mark_weights(generator_id: int, shift: float = 0.5) -> dict[str, torch.Tensor]:
    """Shift every float weight of a stored generator by ``shift`` (a model no random start or few training steps
    comes near), so that a child that really starts from it can be told from one that does not; returns them."""
    from safetensors.torch import save

    marked = {k: v + shift if v.is_floating_point() else v for k, v in weights(generator_id).items()}
    storage.write_bytes(f"{Generator.objects.get(pk=generator_id).files_dir}/weights.safetensors", save(marked))
    return marked


def near(after: dict[str, torch.Tensor], before: dict[str, torch.Tensor], keys) -> bool:
    """Every tensor of ``keys`` within 0.05 of ``before``'s: a couple of fine-tuning steps, not a fresh start."""
    return all(float((after[k].float() - before[k].float()).abs().max()) < 0.05 for k in keys)


def test_a_conditional_ddim_fine_tuned_from_a_base_keeps_its_shape_and_says_where_it_came_from(
    api, user, client, django_capture_on_commit_callbacks
):
    base = train(
        api,
        django_capture_on_commit_callbacks,
        name="shoes",
        kind="ddim",
        dataset=upload_dataset(api, "shoes", {"bag": 4, "sandal": 4}),
    )
    marked = mark_weights(base["id"])
    child = train(
        api,
        django_capture_on_commit_callbacks,
        name="more shoes",
        kind="ddim",
        dataset=upload_dataset(api, "more", {"sandal": 4, "shirt": 4}, start=50),
        base_generator=base["id"],
    )
    assert child["base_generator"] == {"id": base["id"], "name": "shoes"}
    assert base["base_generator"] is None
    for key in DDIMConfig.BASE_SHAPE:
        assert child["config"][key] == base["config"][key], key
    # The fine-tuning recipe over the (test) preset of 6 steps: a third of them, at the preset's learning rate
    # with a warm-up of its own.
    assert child["config"]["total_steps"] == 2 and base["config"]["total_steps"] == 6
    assert child["config"]["learning_rate"] == pytest.approx(base["config"]["learning_rate"] * FINE_TUNE_LR)
    assert child["config"]["warmup_steps"] == 1
    assert child["config"]["classes"] == ["sandal", "shirt"]
    before, after = weights(base["id"]), weights(child["id"])
    assert after[LABEL_EMBED].shape == before[LABEL_EMBED].shape  # 2 classes + "no label" in both
    assert set(before) == set(after) and all(before[k].shape == after[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained on: its own weights
    # ... from the base's: every weight but the class rows (sandal kept, shirt new) is still near the marked base's
    assert near(after, marked, [k for k in before if k != LABEL_EMBED and before[k].is_floating_point()])
    # The run's copy of the base went with the run's other files.
    run = TrainingRun.objects.get(generator_id=child["id"])
    assert not storage.walk(storage.run_prefix(run.pk))
    client.force_login(user)
    page = client.get(f"/generators/{child['id']}/")
    assert page.status_code == 200
    assert f'fine-tuned from <a href="/generators/{base["id"]}/">shoes</a>' in page.content.decode()
    assert "fine-tuned from shoes" in client.get("/generators/").content.decode()
    run_page = client.get(f"/generators/runs/{run.pk}/").content.decode()
    assert "fine-tuned from shoes: the fine-tuning recipe" in run_page


def test_every_refusal_names_the_mismatch_lists_what_fits_and_creates_nothing(
    api, user, other_user, django_capture_on_commit_callbacks
):
    base = train(
        api, django_capture_on_commit_callbacks, name="blobs", kind="ddim", dataset=upload_dataset(api, "blobs")
    )
    rgb = upload_dataset(api, "rgb", start=20)
    gray = upload_dataset(api, "gray", start=40, mode="L")
    hidden = Generator.objects.create(
        owner=other_user,
        name="private",
        kind="ddim",
        resolution=32,
        channels=3,
        preset="quick",
        shared=False,
        status=Generator.Status.READY,
    )
    queued = Generator.objects.create(
        owner=user,
        name="unfinished",
        kind="ddim",
        resolution=32,
        channels=3,
        preset="quick",
        status=Generator.Status.TRAINING,
    )
    dcgan = Generator.objects.create(
        owner=user, name="gan", kind="dcgan", resolution=32, channels=3, preset="quick", status=Generator.Status.READY
    )
    fits = f"{base['id']} 'blobs'"
    cases = [
        (dict(dataset=rgb, kind="ddim", base_generator=hidden.pk), f"no generator {hidden.pk} that you can see"),
        (dict(dataset=rgb, kind="ddim", base_generator=999999), "no generator 999999 that you can see"),
        (dict(dataset=rgb, kind="ddim", base_generator=queued.pk), "is training, not ready"),
        (dict(dataset=rgb, kind="ddim", base_generator=dcgan.pk), "is a dcgan generator; this one is ddim"),
        (
            dict(dataset=rgb, kind="ddim", resolution=64, base_generator=base["id"]),
            "makes 32 px images; this one 64 px",
        ),
        (dict(dataset=gray, kind="ddim", base_generator=base["id"]), "makes colour images; this dataset is grayscale"),
    ]
    generators, runs = Generator.objects.count(), TrainingRun.objects.count()
    for body, mismatch in cases:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/generators/", {"name": "child", "resolution": 32, **body}, format="json")
        assert response.status_code == 400, (body, response.content)
        (message,) = response.json()["base_generator"]
        assert mismatch in message, message
        if body["dataset"] == rgb and body.get("resolution", 32) == 32:
            assert f"Generators that would fit (ddim, 32 px, colour): {fits}." in message, message
        else:
            assert "None of the generators you can see fits" in message, message
        assert (Generator.objects.count(), TrainingRun.objects.count()) == (generators, runs)
    # The same base, shared by its owner, fits the other user too; unshared, it is refused to them.
    assert base["shared"] is True
    other = token_client(other_user)
    other_set = upload_dataset(other, "theirs", start=60)
    with django_capture_on_commit_callbacks(execute=False):
        ok = other.post(
            "/api/generators/",
            {"name": "theirs", "dataset": other_set, "kind": "ddim", "base_generator": base["id"]},
            format="json",
        )
    assert ok.status_code == 202, ok.content
    assert ok.json()["resolution"] == 32  # left out: the base's
    api.post(f"/api/generators/{base['id']}/share/", {"shared": False}, format="json")
    refused = other.post(
        "/api/generators/",
        {"name": "theirs", "dataset": other_set, "kind": "ddim", "base_generator": base["id"]},
        format="json",
    )
    assert refused.status_code == 400 and "that you can see" in refused.json()["base_generator"][0]


def test_options_that_change_the_bases_shape_are_refused(api, django_capture_on_commit_callbacks):
    base = train(
        api, django_capture_on_commit_callbacks, name="blobs", kind="ddim", dataset=upload_dataset(api, "blobs")
    )
    response = api.post(
        "/api/generators/",
        {
            "name": "c",
            "dataset": upload_dataset(api, "c", start=30),
            "kind": "ddim",
            "resolution": 32,
            "base_generator": base["id"],
            "options": {"base_channels": 16},
        },
        format="json",
    )
    assert response.status_code == 400 and "base_channels" in " ".join(response.json()["options"])


def test_the_lineage_survives_deleting_the_base(api, user, client, admin_client, django_capture_on_commit_callbacks):
    base = train(
        api, django_capture_on_commit_callbacks, name="blobs", kind="dcgan", dataset=upload_dataset(api, "blobs")
    )
    child = train(
        api,
        django_capture_on_commit_callbacks,
        name="child",
        kind="dcgan",
        dataset=upload_dataset(api, "child", start=30),
        base_generator=base["id"],
    )
    assert child["config"]["freeze_d_blocks"] == 1  # FreezeD: the base saved its discriminator
    assert api.delete(f"/api/generators/{base['id']}/").status_code == 204
    after = api.get(f"/api/generators/{child['id']}/").json()
    assert after["status"] == "ready" and after["base_generator"] == {"id": None, "name": "blobs"}
    listing = api.get("/api/generators/").json()["results"]
    assert [g["base_generator"] for g in listing] == [{"id": None, "name": "blobs"}]
    assert "fine-tuned from blobs" in admin_client.get("/admin/generators/generator/").content.decode()
    client.force_login(user)
    assert (
        "fine-tuned from blobs (no longer in this registry)"
        in client.get(f"/generators/{child['id']}/").content.decode()
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = api.post(
            f"/api/generators/{child['id']}/generate/", {"count": 2, "seed": 1, "filter": False}, format="json"
        )
    assert job.status_code == 202 and api.get(f"/api/jobs/{job.json()['id']}/").json()["status"] == "done"


def test_the_wizard_offers_the_compatible_generators_to_start_from(
    api, user, client, django_capture_on_commit_callbacks
):
    base = train(
        api, django_capture_on_commit_callbacks, name="blobs", kind="ddim", dataset=upload_dataset(api, "blobs")
    )
    client.force_login(user)
    step1 = client.get("/generators/new/").content.decode()
    assert "<legend>Start from</legend>" in step1 and "nothing (train from scratch)" in step1
    assert "blobs — ddim, 32 px, colour; one class;" in step1 and "6 photos" in step1
    for recipe in (DDIM.fine_tuning, DCGAN.fine_tuning):  # each type's recipe and what it was measured to give
        assert recipe and html.escape(recipe) in step1
    wrong = client.post(
        "/generators/new/",
        {"name": "c", "kind": "ddim", "resolution": 64, "preset": "quick", "base_generator": base["id"]},
    )
    assert wrong.status_code == 200 and "makes 32 px images; this one 64 px" in wrong.content.decode()
    right = client.post(
        "/generators/new/",
        {"name": "c", "kind": "ddim", "resolution": 32, "preset": "quick", "base_generator": base["id"]},
    )
    assert right.status_code == 302
    step2 = client.get("/generators/new/images/").content.decode()
    assert "fine-tuned from blobs" in step2
    assert f'<p class="help" id="fine-tuning">{html.escape(DDIM.fine_tuning)}</p>' in step2
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/generators/new/images/", {"images": image_uploads(6, start=70), "augment": ""})
    child = Generator.objects.get(name="c")
    assert child.status == Generator.Status.READY and child.base_generator_id == base["id"]
    assert child.config["total_steps"] == 2


def test_a_child_asked_for_trains_from_its_copy_of_a_base_deleted_before_it_ran(
    api, django_capture_on_commit_callbacks
):
    base = train(
        api, django_capture_on_commit_callbacks, name="blobs", kind="ddim", dataset=upload_dataset(api, "blobs")
    )
    base_weights = mark_weights(base["id"])
    dataset = upload_dataset(api, "child", start=30)
    with django_capture_on_commit_callbacks(execute=False) as launches:
        response = api.post(
            "/api/generators/",
            {"name": "child", "dataset": dataset, "kind": "ddim", "base_generator": base["id"]},
            format="json",
        )
    assert response.status_code == 202, response.content
    assert api.delete(f"/api/generators/{base['id']}/").status_code == 204
    assert not storage.walk(f"generators/{base['id']}")  # the base's own files are gone
    with django_capture_on_commit_callbacks(execute=True):
        for launch in launches:
            launch()
    child = api.get(f"/api/generators/{response.json()['id']}/").json()
    assert child["status"] == "ready", child
    assert child["base_generator"] == {"id": None, "name": "blobs"} and child["config"]["total_steps"] == 2
    after = weights(child["id"])
    assert set(after) == set(base_weights) and any(not torch.equal(after[k], base_weights[k]) for k in after)
    assert near(after, base_weights, [k for k in after if after[k].is_floating_point()])  # started from the copy


def test_a_storage_outage_while_copying_the_base_leaves_no_rows_and_no_partial_copy(
    api, django_capture_on_commit_callbacks, monkeypatch
):
    base = train(
        api, django_capture_on_commit_callbacks, name="blobs", kind="ddim", dataset=upload_dataset(api, "blobs")
    )
    dataset = upload_dataset(api, "child", start=30)
    generators, runs = Generator.objects.count(), TrainingRun.objects.count()
    write_bytes = storage.write_bytes
    copied = []

    def dies_after_the_first_file(name, data):
        if copied:
            raise storage.StorageUnavailable("the storage went away mid-copy")
        copied.append(name)
        return write_bytes(name, data)

    monkeypatch.setattr(storage, "write_bytes", dies_after_the_first_file)
    response = api.post(
        "/api/generators/",
        {"name": "child", "dataset": dataset, "kind": "ddim", "base_generator": base["id"]},
        format="json",
    )
    assert response.status_code == 503, response.content
    assert copied and copied[0].startswith("runs/")  # one file of the base was copied before the outage
    assert (Generator.objects.count(), TrainingRun.objects.count()) == (generators, runs)
    assert not storage.walk(copied[0].rsplit("/base/", 1)[0])  # and removed with the rolled-back rows


def test_a_base_that_lost_its_weights_is_refused_and_nothing_is_created(api, django_capture_on_commit_callbacks):
    base = train(
        api, django_capture_on_commit_callbacks, name="blobs", kind="ddim", dataset=upload_dataset(api, "blobs")
    )
    storage.delete(f"{Generator.objects.get(pk=base['id']).files_dir}/weights.safetensors")
    dataset = upload_dataset(api, "child", start=30)
    generators, runs = Generator.objects.count(), TrainingRun.objects.count()
    response = api.post(
        "/api/generators/",
        {"name": "child", "dataset": dataset, "kind": "ddim", "base_generator": base["id"]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "has lost its model files (weights.safetensors)" in response.json()["base_generator"][0]
    assert (Generator.objects.count(), TrainingRun.objects.count()) == (generators, runs)
