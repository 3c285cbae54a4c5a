"""The Django admin manages the registry: lists, filters, search, and deleting a generator deletes its files."""

import pytest
from django.core.management import call_command

from apps.core import storage
from apps.generators.models import Generator
from tests.factories import token_client, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_with_generator(admin_client, admin_user, django_capture_on_commit_callbacks):
    api = token_client(admin_user)
    dataset_id = upload(api).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        generator_id = api.post(
            "/api/generators/",
            {"name": "ellipses", "dataset": dataset_id, "kind": "dcgan", "resolution": 32},
            format="json",
        ).json()["id"]
    return admin_client, Generator.objects.get(pk=generator_id)


def test_admin_lists_filters_and_searches_generators(admin_client_with_generator):
    client, generator = admin_client_with_generator
    page = client.get("/admin/generators/generator/?kind=dcgan&q=ellip")
    assert page.status_code == 200 and b"ellipses" in page.content
    assert client.get("/admin/generators/generator/?kind=ddim&q=ellip").content.count(b"ellipses</a>") == 0
    assert client.get(f"/admin/generators/generator/{generator.pk}/change/").status_code == 200
    Generator.objects.filter(pk=generator.pk).update(
        quality={
            "verdict": "not realistic yet",
            "usefulness": {
                "credit": {
                    "value": 0.004,
                    "reason": None,
                    "low": -0.01,
                    "high": 0.02,
                    "verdict": "none",
                    "words": "no measurable gain beyond augmentation",
                }
            },
        }
    )
    listing = client.get("/admin/generators/generator/").content.decode()
    assert "not realistic yet" in listing
    assert "no measurable gain beyond augmentation: +0.4 points (95 % interval -1.0 to +2.0)" in listing
    for model in ("datasets/dataset", "generators/trainingrun", "generation/generationjob"):
        assert client.get(f"/admin/{model}/").status_code == 200


def test_deleting_a_generator_in_the_admin_deletes_its_files(admin_client_with_generator):
    client, generator = admin_client_with_generator
    assert storage.exists(f"{generator.files_dir}/weights.safetensors")
    response = client.post(f"/admin/generators/generator/{generator.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Generator.objects.filter(pk=generator.pk).exists()
    assert storage.walk(generator.files_dir) == []


def test_ensure_admin_uses_djangos_environment_variables(monkeypatch, django_user_model, capsys):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "boss")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "boss-password-9")
    call_command("ensure_admin")
    call_command("ensure_admin")  # second run: nothing new
    assert django_user_model.objects.filter(is_superuser=True).count() == 1
    assert django_user_model.objects.get(username="boss").check_password("boss-password-9")


def test_ensure_admin_generates_and_prints_a_password(monkeypatch, django_user_model, capsys):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    call_command("ensure_admin")
    password = capsys.readouterr().out.split("password: ")[1].split()[0]
    assert django_user_model.objects.get(username="admin").check_password(password)
