"""Forms for uploading images in the web wizard."""
from django import forms

from apps.core.forms import Form


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that accepts many files at once (returns a list)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/png,image/jpeg,image/webp", "multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, (list, tuple)):
            return [super(MultipleFileField, self).clean(item, initial) for item in data if item]
        return [super().clean(data, initial)] if data else []


class ImagesForm(Form):
    images = MultipleFileField(required=False, label="Images (PNG, JPEG or WebP; select many at once)")
    archive = forms.FileField(
        required=False, label="…or a zip of images", widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"})
    )
    labelled = forms.BooleanField(
        required=False, label="My zip has a folder per class (a labelled dataset)",
        help_text="One generator learns every class, and can fill up the short ones. Each top folder of the zip "
                  "is a class, e.g. sandal/…, shirt/…",
    )
