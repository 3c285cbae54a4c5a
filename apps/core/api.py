"""API plumbing shared by the apps: every 400 answer in one shape, messages per field.

The schema documents a 400 as ``{"<field or non_field_errors>": ["message", ...]}`` (apps/core/schema.py,
FieldErrors). Serializer errors already look like that; service errors (InvalidInput) are put in that
shape here, and so are the 400s DRF itself raises with ``{"detail": ...}`` (a body that is not valid
JSON or multipart) or with a bare list, and nested field errors (a list or dict field's items).
"""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import InvalidInput
from .storage import StorageUnavailable

NON_FIELD_ERRORS = "non_field_errors"


def exception_handler(exc, context):
    """Service errors (InvalidInput) become 400 with field errors; every other 400 gets the same shape."""
    if isinstance(exc, InvalidInput):
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, StorageUnavailable):
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response = drf_exception_handler(exc, context)
    if response is not None and response.status_code == status.HTTP_400_BAD_REQUEST:
        response.data = field_errors(response.data)
    return response


def field_errors(data) -> dict[str, list[str]]:
    """``data`` (DRF's error detail: a dict, a list or one message) as messages per field."""
    if isinstance(data, dict) and set(data) == {"detail"} and not isinstance(data["detail"], (dict, list)):
        return {NON_FIELD_ERRORS: [str(data["detail"])]}
    if isinstance(data, dict):
        return {str(field): _messages(value) for field, value in data.items()}
    return {NON_FIELD_ERRORS: _messages(data)}


def _messages(value, prefix: str = "") -> list[str]:
    """Flat list of messages; a nested item's messages start with its key or index ("2: ...")."""
    if isinstance(value, dict):
        return [m for key, item in value.items() for m in _messages(item, f"{prefix}{key}: ")]
    if isinstance(value, (list, tuple)):
        return [m for item in value for m in _messages(item, prefix)]
    return [f"{prefix}{value}"]
