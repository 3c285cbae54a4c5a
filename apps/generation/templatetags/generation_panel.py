"""``{% generate_panel generator form %}``: the generation app's part of a generator's page."""

from django import template

from apps.ml.engine import registry

from ..forms import GenerateForm
from ..presentation import class_bars
from ..selectors import jobs_for

register = template.Library()

RECENT_JOBS = 10


@register.inclusion_tag("generation/_generate_panel.html", takes_context=True)
def generate_panel(context, generator, form=None):
    """The generate form (``form`` when it comes back with errors, else a new one) and the user's recent jobs."""
    generator_type = registry.all_types().get(generator.kind)
    uses_steps = bool(generator_type and generator_type.uses_sampling_steps)
    if form is None:
        form = GenerateForm(
            initial={"steps": generator_type.default_sampling_steps if generator_type else None}, generator=generator
        )
    request = context["request"]
    return {
        "generator": generator,
        "form": form,
        "uses_steps": uses_steps,
        "jobs": jobs_for(request.user).filter(generator=generator)[:RECENT_JOBS],
        "class_bars": class_bars(generator.classes),
        "csrf_token": context.get("csrf_token"),
    }
