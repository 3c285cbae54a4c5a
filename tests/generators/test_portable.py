"""Export a generator as one file and import it as a ready generator (#20): a round trip samples the same images;
damaged, changed and foreign files are refused and create nothing. Tiny models, CPU, PostgreSQL, real files."""

import hashlib
import io
import json
import struct
import zipfile

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core import storage
from apps.generators.models import Generator
from apps.ml.engine import registry
from tests.factories import png_bytes, token_client, train, upload_dataset

pytestmark = pytest.mark.django_db


def export(api, generator_id: int) -> bytes:
    response = api.get(f"/api/generators/{generator_id}/export/")
    assert response.status_code == 200, response
    assert response["Content-Type"] == "application/zip"
    return b"".join(response.streaming_content)


def import_file(api, data: bytes, **fields):
    return api.post(
        "/api/generators/import/",
        {"file": SimpleUploadedFile("g.synthgen.zip", data, content_type="application/zip"), **fields},
        format="multipart",
    )


def model_of(generator_id: int, tmp_path):
    generator = Generator.objects.get(pk=generator_id)
    folder = storage.fetch(generator.files_dir, tmp_path / f"model{generator_id}", skip=storage.GENERATOR_EXTRAS)
    return registry.get(generator.kind).load(folder)


def rewrite(data: bytes, change) -> bytes:
    """The zip ``data`` with ``change(members)`` applied to its {name: bytes}."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def set_manifest(**changes):
    def change(members):
        manifest = json.loads(members["manifest.json"])
        manifest.update(changes)
        members["manifest.json"] = json.dumps(manifest).encode()

    return change


@pytest.fixture
def conditional(api, django_capture_on_commit_callbacks):
    return train(
        api,
        django_capture_on_commit_callbacks,
        name="shoes",
        kind="ddim",
        dataset=upload_dataset(api, "shoes", {"bag": 4, "sandal": 4}),
    )


def test_an_export_imported_by_another_user_samples_the_same_images_for_the_same_seed(
    api, other_user, conditional, tmp_path, django_capture_on_commit_callbacks
):
    data = export(api, conditional["id"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert {"weights.safetensors", "config.json", "samples.png"} <= set(archive.namelist())
        assert not [n for n in archive.namelist() if n.endswith((".pt", ".pth", ".pkl", ".bin"))]
    assert manifest["format"] == "synthgen-generator" and manifest["kind"] == "ddim"
    assert manifest["architecture_version"] == conditional["config"]["architecture_version"]
    assert manifest["classes"] == conditional["classes"] and manifest["quality"] == conditional["quality"]
    assert manifest["lineage"]["exported_from"] == {"id": conditional["id"], "name": "shoes"}

    other = token_client(other_user)
    response = import_file(other, data)
    assert response.status_code == 201, response.content
    imported = response.json()
    assert imported["status"] == "ready" and imported["owner"] == "bob" and imported["shared"] is False
    assert imported["id"] != conditional["id"] and imported["classes"] == conditional["classes"]
    assert imported["quality"] == conditional["quality"] and imported["config"] == conditional["config"]
    original, copy = model_of(conditional["id"], tmp_path), model_of(imported["id"], tmp_path)
    for seed in (0, 7):
        assert torch.equal(
            original.sample(4, seed=seed, labels=["bag", "sandal", "bag", "sandal"], steps=3),
            copy.sample(4, seed=seed, labels=["bag", "sandal", "bag", "sandal"], steps=3),
        )
    # It generates like any generator of the importer (no training photos came with it: no filter).
    with django_capture_on_commit_callbacks(execute=True):
        job = other.post(
            f"/api/generators/{imported['id']}/generate/", {"counts": {"sandal": 2}, "seed": 1}, format="json"
        )
    assert job.status_code == 202, job.content
    assert other.get(f"/api/jobs/{job.json()['id']}/").json()["status"] == "done"


def test_a_fine_tuned_dcgan_exports_its_lineage_and_its_discriminator(
    api, django_capture_on_commit_callbacks, tmp_path
):
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
    data = export(api, child["id"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "discriminator.safetensors" in archive.namelist()
    imported = import_file(api, data, name="child again", shared="true").json()
    assert imported["name"] == "child again" and imported["shared"] is True
    assert imported["base_generator"] == {"id": None, "name": "blobs"}
    assert torch.equal(
        model_of(child["id"], tmp_path).sample(6, seed=3), model_of(imported["id"], tmp_path).sample(6, seed=3)
    )
    # The imported copy is a base like any other: fine-tuning from it starts from its discriminator too.
    grandchild = train(
        api,
        django_capture_on_commit_callbacks,
        name="grandchild",
        kind="dcgan",
        dataset=upload_dataset(api, "gc", start=60),
        base_generator=imported["id"],
    )
    assert grandchild["base_generator"] == {"id": imported["id"], "name": "child again"}
    assert grandchild["config"]["freeze_d_blocks"] == 1


def _pickled_weights(members):
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buffer)  # a pickle where safetensors belong, checksum made to match
    members["weights.safetensors"] = buffer.getvalue()
    manifest = json.loads(members["manifest.json"])
    manifest["files"]["weights.safetensors"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    members["manifest.json"] = json.dumps(manifest).encode()


def _flip_a_weight_byte(members):
    weights = bytearray(members["weights.safetensors"])
    weights[-5] ^= 0xFF
    members["weights.safetensors"] = bytes(weights)


def _with_checksum(members, name, data):
    members[name] = data
    manifest = json.loads(members["manifest.json"])
    manifest["files"][name]["sha256"] = hashlib.sha256(data).hexdigest()
    members["manifest.json"] = json.dumps(manifest).encode()


def _cut_tensor_bytes(members):
    """The last 8 bytes of the weights cut off, checksum made to match: the header promises more than is there."""
    _with_checksum(members, "weights.safetensors", members["weights.safetensors"][:-8])


def _header_past_the_end(members):
    weights = members["weights.safetensors"]
    _with_checksum(members, "weights.safetensors", struct.pack("<Q", len(weights)) + weights[8:])


def _resized_config(members):
    """The config claims a wider network, checksum made to match: the weights no longer fit it."""
    config = json.loads(members["config.json"])
    config["base_channels"] = config["base_channels"] * 2
    members["config.json"] = json.dumps(config).encode()
    manifest = json.loads(members["manifest.json"])
    manifest["files"]["config.json"]["sha256"] = hashlib.sha256(members["config.json"]).hexdigest()
    members["manifest.json"] = json.dumps(manifest).encode()


def test_damaged_changed_and_foreign_files_are_refused_and_create_nothing(api, conditional, tmp_path):
    data = export(api, conditional["id"])
    png_zip = io.BytesIO()
    with zipfile.ZipFile(png_zip, "w") as archive:
        archive.writestr("photos/1.png", png_bytes(1))
    cases = {
        "truncated": (data[: len(data) // 2], "not a complete zip"),
        "truncated near the end": (data[:-30], "not a complete zip"),
        "a changed byte": (rewrite(data, _flip_a_weight_byte), "checksum differs"),
        "a pickle for weights": (rewrite(data, _pickled_weights), "is not a safetensors file"),
        "weights cut short": (rewrite(data, _cut_tensor_bytes), "is not a safetensors file"),
        "a header past the end": (rewrite(data, _header_past_the_end), "header runs past the end"),
        "weights that do not fit the config": (rewrite(data, _resized_config), "do not fit the model"),
        "a png": (png_bytes(2), "not a complete zip"),
        "a zip of photos": (png_zip.getvalue(), "has no manifest.json"),
        "an unknown type": (rewrite(data, set_manifest(kind="stylegan9")), "unknown generator type 'stylegan9'"),
        "a newer architecture": (rewrite(data, set_manifest(architecture_version=99)), "architecture version 99"),
        "a newer format": (rewrite(data, set_manifest(format_version=2)), "format version 2"),
        "a missing file": (rewrite(data, lambda m: m.pop("weights.safetensors")), "lacks weights.safetensors"),
        "a class count that is not a number": (
            rewrite(
                data, set_manifest(classes=[{"name": c["name"], "image_count": "many"} for c in conditional["classes"]])
            ),
            "not a list of",
        ),
        "a manifest nested too deep": (rewrite(data, _deep_manifest), "can read (RecursionError)"),
    }
    generators = Generator.objects.count()
    stored = sorted(storage.walk("generators"))
    assert stored  # the exported generator's files
    for case, (content, message) in cases.items():
        response = import_file(api, content)
        assert response.status_code == 400, (case, response.content)
        (error,) = response.json()["file"]
        assert error.startswith("This file cannot be imported:") and message in error, (case, error)
        assert Generator.objects.count() == generators, case
        assert sorted(storage.walk("generators")) == stored, case
    assert import_file(api, data).status_code == 201  # the untouched file imports


def test_only_a_visible_ready_generator_exports(api, other_api, conditional, user):
    queued = Generator.objects.create(
        owner=user,
        name="unfinished",
        kind="ddim",
        resolution=32,
        channels=3,
        preset="quick",
        status=Generator.Status.TRAINING,
    )
    refused = api.get(f"/api/generators/{queued.pk}/export/")
    assert refused.status_code == 400 and "only a ready one can be exported" in refused.json()["generator"][0]
    api.post(f"/api/generators/{conditional['id']}/share/", {"shared": False}, format="json")
    assert other_api.get(f"/api/generators/{conditional['id']}/export/").status_code == 404


def test_the_admin_exports_and_imports(api, admin_client, admin_user, conditional):
    response = admin_client.post(
        "/admin/generators/generator/", {"action": "export", "_selected_action": [conditional["id"]]}
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    data = b"".join(response.streaming_content)
    assert admin_client.get("/admin/generators/generator/").content.decode().count("Import a generator") == 1
    generators = Generator.objects.count()
    refused = admin_client.post(
        "/admin/generators/generator/import/", {"file": SimpleUploadedFile("g.zip", data[:100]), "name": ""}
    )
    assert refused.status_code == 200 and "not a complete zip" in refused.content.decode()
    assert Generator.objects.count() == generators
    done = admin_client.post(
        "/admin/generators/generator/import/", {"file": SimpleUploadedFile("g.zip", data), "name": "from the admin"}
    )
    imported = Generator.objects.get(name="from the admin")
    assert done.status_code == 302 and imported.owner == admin_user and imported.is_ready


def _config_changed(**changes):
    """config.json with ``changes`` (and the manifest's size fields alike), checksum made to match: the weights still
    fit, but the settings ask for what no request could (a schedule of a billion steps, a 4096 px image)."""

    def change(members):
        config = {**json.loads(members["config.json"]), **changes}
        members["config.json"] = json.dumps(config).encode()
        manifest = json.loads(members["manifest.json"])
        manifest.update({key: value for key, value in changes.items() if key in ("resolution", "channels")})
        manifest["files"]["config.json"]["sha256"] = hashlib.sha256(members["config.json"]).hexdigest()
        members["manifest.json"] = json.dumps(manifest).encode()

    return change


def test_a_config_with_settings_out_of_range_is_refused_before_anything_is_built(api, conditional):
    """An imported config.json is checked like a request's options: its weights bound the networks, not the
    noise schedule (``timesteps`` tensors) or the image size every generation job allocates."""
    data = export(api, conditional["id"])
    generators = Generator.objects.count()
    for changes in ({"timesteps": 200_000}, {"resolution": 4096}, {"sampling_steps": -5}):
        response = import_file(api, rewrite(data, _config_changed(**changes)))
        assert response.status_code == 400, (changes, response.content)
        (error,) = response.json()["file"]
        assert "config.json" in error and next(iter(changes)) in error, (changes, error)
        assert Generator.objects.count() == generators, changes


def test_a_manifest_or_config_larger_than_json_needs_is_refused_unread(api, conditional):
    """The JSON members are parsed in memory (a deflated megabyte of ``[0,0,...]`` parses into gigabytes of Python
    objects): each is capped far below the zip's total."""
    from apps.ml.engine.portable import MAX_JSON_BYTES

    data = export(api, conditional["id"])

    def padded(name):
        def change(members):
            members[name] = members[name] + b" " * (MAX_JSON_BYTES + 1)  # still valid JSON
            if name != "manifest.json":
                manifest = json.loads(members["manifest.json"])
                manifest["files"][name]["sha256"] = hashlib.sha256(members[name]).hexdigest()
                members["manifest.json"] = json.dumps(manifest).encode()

        return change

    generators = Generator.objects.count()
    for name in ("manifest.json", "config.json"):
        response = import_file(api, rewrite(data, padded(name)))
        assert response.status_code == 400, (name, response.content)
        assert f"{name} is larger than" in response.json()["file"][0], name
        assert Generator.objects.count() == generators, name


def _deep_manifest(members):
    members["manifest.json"] = b"[" * 200_000 + b"]" * 200_000  # json.loads recurses past Python's limit


ODD_REPORTS = {
    "a verdict that is a list": {"verdict": ["varied and new"]},
    "a credit that is a number": {"verdict": "varied and new", "usefulness": {"credit": 3}},
    "a precision that is text": {"verdict": "varied and new", "precision": "very high"},
    "classes that are a list": {"verdict": "varied and new", "classes": ["sandal"]},
}


@pytest.mark.parametrize("case", ODD_REPORTS)
def test_a_quality_report_the_pages_cannot_read_is_left_out_with_a_warning(case, admin_client, api, conditional):
    """A crafted file's report never breaks the generator page or the admin list: it is dropped and the generator
    says so; a readable report is kept as it is."""
    data = export(api, conditional["id"])
    response = admin_client.post(
        "/admin/generators/generator/import/",
        {"file": SimpleUploadedFile("g.zip", rewrite(data, set_manifest(quality=ODD_REPORTS[case]))), "name": case},
    )
    assert response.status_code == 302, response.content
    odd = Generator.objects.get(name=case)
    assert odd.quality is None and any("quality report" in warning for warning in odd.warnings)
    assert admin_client.get(f"/generators/{odd.pk}/").status_code == 200
    assert admin_client.get("/admin/generators/generator/").status_code == 200
    kept = import_file(api, data).json()
    assert kept["quality"] is not None and "verdict" in kept["quality"]  # the tiny model's report: there to keep
    assert kept["quality"] == Generator.objects.get(pk=conditional["id"]).quality
    assert not any("quality report" in warning for warning in Generator.objects.get(pk=kept["id"]).warnings)
