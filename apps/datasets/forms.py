"""Forms for uploading images in the web wizard."""

from django import forms

from apps.core.forms import Form


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that accepts many files at once (returns a list)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault(
            "widget", MultipleFileInput(attrs={"accept": "image/png,image/jpeg,image/webp", "multiple": True})
        )
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, (list, tuple)):
            return [super(MultipleFileField, self).clean(item, initial) for item in data if item]
        return [super().clean(data, initial)] if data else []


ONE_CLASS, FOLDER_PER_CLASS = "one", "classes"


class ImagesForm(Form):
    images = MultipleFileField(required=False, label="Images (PNG, JPEG or WebP; select many at once)")
    archive = forms.FileField(
        required=False,
        label="…or a zip of images",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}),
    )
    labelling = forms.ChoiceField(
        required=False,
        label="What do your images show?",
        widget=forms.RadioSelect(attrs={"class": "choices"}),
        choices=[
            (ONE_CLASS, "One class: every image shows the same kind of thing (e.g. 300 photos of ripe tomatoes)"),
            (
                FOLDER_PER_CLASS,
                "Several classes: my zip has a folder per class (e.g. apple/…, banana/…, cherry/…); "
                "one generator learns them all and can fill up the short ones",
            ),
        ],
        help_text="Not sure? Leave it: a zip with a folder per class is noticed, and you are asked before training.",
    )


def chosen_labelled(choice: str) -> bool | None:
    """The ``labelling`` answer as a dataset's ``labelled`` (None: not answered)."""
    return {ONE_CLASS: False, FOLDER_PER_CLASS: True}.get(choice)
