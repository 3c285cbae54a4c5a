"""The generate form on a generator's page. The count cap is a setting, the steps range the ML package's."""
from django import forms
from django.conf import settings

from apps.core.forms import Form
from apps.ml.base import MAX_SAMPLING_STEPS


def count_field() -> forms.IntegerField:
    """How many images: 1 to settings.SYNTHGEN_MAX_GENERATION_COUNT (the API and the service read the same cap)."""
    maximum = settings.SYNTHGEN_MAX_GENERATION_COUNT
    return forms.IntegerField(min_value=1, max_value=maximum, initial=100, label="How many images",
                              help_text=f"1 to {maximum:,}. They come as PNG files in one zip.")


class GenerateForm(Form):
    count = count_field()  # made again for each form (__init__): the cap is read when the form is made
    seed = forms.IntegerField(min_value=0, max_value=2**63 - 1, required=False, label="Seed (optional)",
                              help_text="The same seed gives the same images again. Leave empty for new ones.")
    steps = forms.IntegerField(min_value=1, max_value=MAX_SAMPLING_STEPS, required=False, label="Sampling steps",
                               help_text="More steps: cleaner images, slower. 10–250 is typical.")
    filter_images = forms.BooleanField(
        required=False, initial=True, label="Leave out unusable images",
        help_text="Drops images that are mostly noise or blank, and near-copies of your training photos.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["count"] = count_field()
