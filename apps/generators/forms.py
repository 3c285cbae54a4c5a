"""The two-step training wizard's forms. Type choices come from the generator registry."""

import json

from django import forms
from django.utils.html import format_html

from apps.core.errors import InvalidInput
from apps.core.forms import Form
from apps.ml.engine import registry
from apps.ml.engine.base import PRESETS, RESOLUTIONS

from . import services, transfer

PRESET_HELP = {
    "": "Automatic: chosen from the number of images you upload.",
    "quick": "Quick: a first look in minutes.",
    "standard": "Standard: better images, takes longer.",
    "long": "Long: the best images; hours on a CPU.",
}


def kind_choices() -> list[tuple[str, str]]:
    """(key, "label: description") for every registered generator type, shown as radio buttons."""
    return [
        (key, format_html("<strong>{}</strong> — {}", cls.label, cls.description))
        for key, cls in registry.all_types().items()
    ]


def start_from_help() -> str:
    """The "Start from" field's help: what fine-tuning does, and each type's recipe and what it was measured to give."""
    recipes = " ".join(
        f"{cls.label}: {cls.fine_tuning}" for cls in registry.all_types().values() if cls.supports_fine_tuning
    )
    return (
        "A generator in the registry of the same type and image size: training starts from its weights and runs "
        "the type's fine-tuning recipe, about a third of the times shown above. Its photos must be colour or "
        f"grayscale like yours. {recipes}"
    )


class OptionsField(forms.JSONField):
    """The advanced settings as JSON; no settings is an empty box (not the text ``null`` or ``{}``)."""

    def prepare_value(self, value):
        return "" if value in (None, {}, "") else super().prepare_value(value)


class GeneratorSettingsForm(Form):
    name = forms.CharField(max_length=120, label="Name", help_text="What the images show, e.g. 'red tulips'.")
    kind = forms.ChoiceField(label="Generator type", widget=forms.RadioSelect(attrs={"class": "choices"}))
    resolution = forms.TypedChoiceField(
        choices=[(r, f"{r} × {r} px") for r in RESOLUTIONS],
        coerce=int,
        initial=64,
        label="Image size",
        help_text="Larger images take longer to train and need more photos.",
    )
    preset = forms.ChoiceField(
        choices=[(p, PRESET_HELP[p]) for p in ("", *PRESETS)],
        required=False,
        label="Training length",
        widget=forms.RadioSelect(attrs={"class": "choices"}),
        initial="",
    )
    shared = forms.BooleanField(
        required=False,
        initial=True,
        label="Share the trained generator with every user",
        help_text="Others can then generate from it without uploading anything. You can change this later.",
    )

    base_generator = forms.TypedChoiceField(
        coerce=int,
        empty_value=None,
        required=False,
        label="Start from",
        initial="",
        widget=forms.RadioSelect(attrs={"class": "choices"}),
    )

    options = OptionsField(
        required=False,
        label="Advanced settings (optional)",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": '{"total_steps": 3000}'}),
        help_text="Only if you know what they do: a JSON object of settings over the preset. "
        "The settings of each type and their standard values are listed below.",
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["kind"].choices = kind_choices()
        self.fields["base_generator"].help_text = start_from_help()
        self.fields["base_generator"].choices = [
            ("", "nothing (train from scratch)"),
            *((g.pk, transfer.describe_base(g)) for g in transfer.possible_bases(user)[:50]),
        ]
        if not self.is_bound and not self.initial.get("kind") and self.fields["kind"].choices:
            self.initial["kind"] = self.fields["kind"].choices[0][0]

    def clean(self):
        data = super().clean()
        if data.get("base_generator") and data.get("kind") and data.get("resolution"):
            # The channels come with the dataset in step 2, where start_training checks the base again.
            base = transfer.possible_bases(self.user).filter(pk=data["base_generator"]).first()
            try:
                transfer.check_base(
                    user=self.user,
                    base_id=data["base_generator"],
                    kind=data["kind"],
                    resolution=data["resolution"],
                    channels=base.channels if base else 3,
                )
            except InvalidInput as refused:
                for problem in refused.errors["base_generator"]:
                    self.add_error("base_generator", problem)
        options = data.get("options") or {}
        if options and data.get("kind") and data.get("resolution"):
            # The dataset comes in step 2, where the options are checked again against its own recipe.
            problems = services.option_errors(
                data["kind"], options, resolution=data["resolution"], preset=data.get("preset") or "standard"
            )
            for problem in problems:
                self.add_error("options", problem)
        data["options"] = options
        return data


def type_settings() -> dict[str, str]:
    """Each registered type's advanced settings as pretty JSON, for the wizard's advanced section."""
    return {key: json.dumps(services.tunable_settings(key), indent=1) for key in registry.all_types()}


class TrainingDataForm(Form):
    augment = forms.BooleanField(
        required=False,
        initial=True,
        label="Make the most of few photos (augment them: mild brightness and contrast changes of the object)",
        help_text=(
            "Recommended for fewer than 500 images. Mirror images and quarter turns are added only when your "
            "photos already show them (the review below says which); the generator never learns an "
            "augmentation as a kind of photo. Nothing is rotated a little or cropped: resampling blurs fine "
            "detail, and the generator would learn the blur. The preview shows what it does to your images."
        ),
    )
