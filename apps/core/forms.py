"""A Form base for the web pages: labels without Django's trailing colon (the pages style labels themselves)."""

from django import forms


class Form(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
