"""Constants written once and read by everything that uses them: the generation count cap and the stage list."""

import pytest

from apps.generators.stages import STAGE_ORDER

pytestmark = pytest.mark.django_db


def test_the_generation_count_cap_is_one_setting_read_by_api_schema_form_and_service(settings, api, user):
    from apps.core.errors import InvalidInput
    from apps.generation.api import GenerateSerializer
    from apps.generation.forms import GenerateForm
    from apps.generation.services import start_generation
    from apps.generators.models import Generator

    settings.SYNTHGEN_MAX_GENERATION_COUNT = 7
    assert GenerateSerializer(data={"count": 7}).is_valid()
    assert not GenerateSerializer(data={"count": 8}).is_valid()
    assert GenerateForm({"count": 7, "filter_images": True}).is_valid()
    form = GenerateForm({"count": 8})
    assert not form.is_valid() and "count" in form.errors
    assert form.fields["count"].help_text.startswith("1 to 7.")
    schema = api.get("/api/schema/?format=json").json()["components"]["schemas"]
    assert schema["GenerateRequest"]["properties"]["count"]["maximum"] == 7
    assert schema["FieldErrors"]["example"]["count"] == ["Ask for between 1 and 7 images."]
    generator = Generator.objects.create(
        owner=user, name="g", kind="dcgan", resolution=32, preset="quick", status="ready"
    )
    with pytest.raises(InvalidInput) as refused:
        start_generation(owner=user, generator=generator, count=8)
    assert refused.value.errors == {"count": ["Ask for between 1 and 7 images."]}


def test_the_stage_list_is_written_once():
    from apps.generators import presentation, runs, services, tasks
    from apps.generators.models import TrainingRun

    assert runs.STAGE_ORDER is STAGE_ORDER and services.STAGE_ORDER is STAGE_ORDER and TrainingRun.STAGES is STAGE_ORDER
    chain = tasks.stage_tasks()
    assert tuple(chain) == STAGE_ORDER
    assert [task.name for task in chain.values()] == [f"generators.{stage}" for stage in STAGE_ORDER]
    assert set(STAGE_ORDER) <= set(presentation.STAGE_LABELS)  # the run page has words for every stage
