"""The generate form on a generator's page. The count cap is a setting, the steps range the ML package's."""

from django import forms
from django.conf import settings

from apps.core.forms import Form
from apps.ml.engine.base import MAX_GUIDANCE, MAX_SAMPLING_STEPS, MIN_GUIDANCE


def count_field() -> forms.IntegerField:
    """How many images: 1 to settings.SYNTHGEN_MAX_GENERATION_COUNT (the API and the service read the same cap)."""
    maximum = settings.SYNTHGEN_MAX_GENERATION_COUNT
    return forms.IntegerField(
        min_value=1,
        max_value=maximum,
        initial=100,
        label="How many images",
        help_text=f"1 to {maximum:,}. They come as PNG files in one zip.",
    )


class GenerateForm(Form):
    count = count_field()  # made again for each form (__init__): the cap is read when the form is made
    seed = forms.IntegerField(
        min_value=0,
        max_value=2**63 - 1,
        required=False,
        label="Seed (optional)",
        help_text="The same seed gives the same images again. Leave empty for new ones.",
    )
    steps = forms.IntegerField(
        min_value=1,
        max_value=MAX_SAMPLING_STEPS,
        required=False,
        label="Sampling steps",
        help_text="More steps: cleaner images, slower. 10–250 is typical.",
    )
    filter_images = forms.BooleanField(
        required=False,
        initial=True,
        label="Leave out unusable images",
        help_text="Drops images that are mostly noise or blank, and near-copies of your training photos.",
    )

    def __init__(self, *args, generator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["count"] = count_field()
        if generator is not None and generator.classes:  # a conditional generator: which classes, how many
            names = [c["name"] for c in generator.classes]
            self.fields["count"].required = False
            self.fields["count"].help_text += " Spread evenly over the classes, or all of the class chosen below."
            self.fields["class_name"] = forms.ChoiceField(
                choices=[("", "Every class, evenly"), *((name, name) for name in names)], required=False, label="Class"
            )
            self.fields["balance_to"] = forms.IntegerField(
                min_value=1,
                required=False,
                label="…or fill every class up to",
                help_text="Images per class, counting your photos: each class gets what it lacks (count is then "
                f"not needed). Your largest class has {max(c['image_count'] for c in generator.classes):,}.",
            )
            self.fields["guidance"] = forms.FloatField(
                min_value=MIN_GUIDANCE,
                max_value=MAX_GUIDANCE,
                required=False,
                label="Guidance (optional)",
                help_text="How strongly each image follows its class: 1 = not at all beyond the label, higher = more "
                "typical and less varied. Leave empty for the generator's default.",
            )

    def request(self) -> dict:
        """How many of what, from a valid form, as start_generation's keyword arguments: ``count``, and for a
        conditional generator ``balance_to`` (then no count), ``class_name`` and ``guidance``."""
        data = self.cleaned_data
        if "balance_to" not in self.fields:
            return {"count": data["count"]}
        if data.get("balance_to"):
            return {"balance_to": data["balance_to"], "count": None, "guidance": data.get("guidance")}
        return {"count": data["count"], "class_name": data.get("class_name") or None, "guidance": data.get("guidance")}
