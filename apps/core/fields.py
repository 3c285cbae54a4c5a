"""Serializer fields for JSON bodies that take exactly the JSON types the schema gives them.

DRF's fields also take other types and convert them: "5" or true for the integer 5, 5 for the string "5",
"0" or 0 for false, "64" for the choice 64. A request the schema calls invalid would then be accepted.
"""

from rest_framework import serializers


class BooleanField(serializers.BooleanField):
    """true or false (DRF's would also take "0", 1, "yes", ...)."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class IntegerField(serializers.IntegerField):
    """A JSON integer (DRF's would also take "5", " 5" and true)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class CharField(serializers.CharField):
    """A JSON string (DRF's would also take 5 and 2.5)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ChoiceField(serializers.ChoiceField):
    """One of the choices, of its type (DRF's would also take "64" for 64, and 64 for "64")."""

    def to_internal_value(self, data):
        if data == "" and self.allow_blank:
            return ""
        if not any(type(data) is type(choice) and data == choice for choice in self.choices):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class PrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """An object's id as a JSON integer (DRF's would also take "5")."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("incorrect_type", data_type=type(data).__name__)
        return super().to_internal_value(data)


class FloatField(serializers.FloatField):
    """A JSON number (DRF's would also take "1.5" and true)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)
