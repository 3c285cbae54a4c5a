"""The two-step training wizard's forms. Choices come from the generator registry."""
from django import forms

from .ml import registry
from .ml.base import PRESETS, RESOLUTIONS

PRESET_HELP = {
    "": "Automatic: chosen from the number of images you upload.",
    "quick": "Quick: a first look in minutes.",
    "standard": "Standard: better images, takes longer.",
    "long": "Long: the best images; hours on a CPU.",
}


class GeneratorSettingsForm(forms.Form):
    name = forms.CharField(max_length=120, label="Name", help_text="What the images show, e.g. 'red tulips'.")
    kind = forms.ChoiceField(label="Generator type")
    resolution = forms.TypedChoiceField(
        choices=[(r, f"{r} × {r} px") for r in RESOLUTIONS], coerce=int, initial=64, label="Image size"
    )
    preset = forms.ChoiceField(
        choices=[(p, PRESET_HELP[p]) for p in ("", *PRESETS)], required=False, label="Training length"
    )
    shared = forms.BooleanField(required=False, initial=True, label="Share the trained generator with every user")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = registry.choices()
        self.fields["kind"].help_text = " ".join(
            f"{cls.label}: {cls.description}" for cls in registry.all_types().values()
        )


class TrainingDataForm(forms.Form):
    augment = forms.BooleanField(
        required=False,
        label="Augment my images (flips, small rotations and crops, mild colour changes)",
        help_text="Recommended for fewer than 500 images.",
    )


class GenerateForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=10_000, initial=100, label="How many images")
    seed = forms.IntegerField(min_value=0, required=False, label="Seed (optional; the same seed gives the same images)")
    steps = forms.IntegerField(min_value=1, max_value=1000, required=False, label="Sampling steps (diffusion only)")
