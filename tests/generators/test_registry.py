"""The registry is the one place generator types live: a type registered anywhere shows up in the
training form, the admin filter and the API without any other change."""

import pytest
import torch

from apps.generators.forms import GeneratorSettingsForm
from apps.ml.engine import registry
from apps.ml.engine.base import GeneratorType, TrainResult
from tests.factories import upload

pytestmark = pytest.mark.django_db


class ConstantType(GeneratorType):
    """A third type, made only for this test: every image is one learnt mean colour."""

    kind = "constant-test"
    label = "Constant (test only)"
    description = "Always paints the average colour of your images."

    @classmethod
    def default_config(cls, *, resolution, channels, preset, image_count, device="cpu"):
        return {
            "resolution": resolution,
            "channels": channels,
            "preset": preset,
            "total_steps": 1,
            "batch_size": 1,
            "checkpoint_every": 1,
            "brightness": 1.0,
        }

    def train(self, images, *, checkpoint_dir, on_progress=None, should_stop=None):
        self.mean = images.mean(dim=(0, 2, 3))
        return TrainResult(steps=1, seconds=0.0)

    def sample(self, n, *, seed, steps=None, batch_size=256):
        r = self.config["resolution"]
        return ((self.mean.view(1, -1, 1, 1) + 1) * 127.5).expand(n, -1, r, r).to(torch.uint8).clone()

    def save(self, directory):
        pass

    @classmethod
    def load(cls, directory, device="cpu"):
        return cls({"resolution": 32})


@pytest.fixture
def third_type():
    registry.register(ConstantType)
    yield ConstantType
    registry.unregister(ConstantType.kind)


def test_both_builtin_types_are_registered():
    assert {"dcgan", "ddim"} <= set(registry.all_types())
    assert registry.get("ddim").uses_sampling_steps and not registry.get("dcgan").uses_sampling_steps
    assert registry.get("ddim").default_sampling_steps > 0 and registry.get("dcgan").default_sampling_steps is None


def test_a_type_registers_with_a_decorator_and_takes_steps_when_it_has_a_default():
    @registry.register
    class Stepped(ConstantType):
        kind = "stepped-test"
        default_sampling_steps = 7

    try:
        assert registry.get("stepped-test") is Stepped and Stepped.uses_sampling_steps
        assert not ConstantType.uses_sampling_steps
    finally:
        registry.unregister("stepped-test")
    with pytest.raises(KeyError, match="unknown generator type 'stepped-test'"):
        registry.get("stepped-test")
    with pytest.raises(TypeError, match="set default_sampling_steps"):

        class Contradictory(ConstantType):
            uses_sampling_steps = True


def test_a_new_type_appears_in_the_form_the_api_and_the_admin(third_type, api, admin_client):
    choices = dict(GeneratorSettingsForm().fields["kind"].choices)
    assert "Constant (test only)" in choices["constant-test"] and {"dcgan", "ddim"} <= set(choices)
    types = {t["key"]: t for t in api.get("/api/generator-types/").json()}
    assert types["constant-test"]["fine_tuning"] == ""  # it cannot start from a base
    assert types["dcgan"]["fine_tuning"] and "less realistic" in types["dcgan"]["fine_tuning"]
    assert types["constant-test"]["settings"] == {
        "total_steps": 1,
        "batch_size": 1,
        "checkpoint_every": 1,
        "brightness": 1.0,
    }
    dataset_id = upload(api).json()["id"]
    accepted = api.post(
        "/api/generators/", {"name": "c", "dataset": dataset_id, "kind": "constant-test"}, format="json"
    )
    assert accepted.status_code == 202, accepted.content
    assert b"Constant (test only)" in admin_client.get("/admin/generators/generator/").content


def test_unregistered_types_are_refused(api):
    dataset_id = upload(api).json()["id"]
    response = api.post(
        "/api/generators/", {"name": "c", "dataset": dataset_id, "kind": "constant-test"}, format="json"
    )
    assert response.status_code == 400 and "kind" in response.json()


def test_advanced_settings_are_checked_and_used(api, django_capture_on_commit_callbacks):
    dataset_id = upload(api).json()["id"]
    bad = api.post(
        "/api/generators/",
        {
            "name": "g",
            "dataset": dataset_id,
            "kind": "dcgan",
            "resolution": 32,
            "options": {"total_steps": 0, "nope": 1, "lr_g": "fast"},
        },
        format="json",
    )
    assert bad.status_code == 400
    problems = " ".join(bad.json()["options"])
    assert "'nope' is not a setting" in problems and "'lr_g' must be like" in problems and "between 1" in problems
    with django_capture_on_commit_callbacks(execute=True):
        good = api.post(
            "/api/generators/",
            {
                "name": "g",
                "dataset": dataset_id,
                "kind": "dcgan",
                "resolution": 32,
                "options": {"total_steps": 4, "lr_g": 0.001},
            },
            format="json",
        )
    generator = api.get(f"/api/generators/{good.json()['id']}/").json()
    assert generator["status"] == "ready"
    assert generator["config"]["total_steps"] == 4 and generator["config"]["lr_g"] == 0.001
    assert generator["progress"]["total"] == 4
