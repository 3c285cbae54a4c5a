"""OpenAPI schema post-processing (a drf-spectacular hook): document the error answers of every endpoint.

drf-spectacular documents the successful answers from the views. The errors follow from how the API
is built, so they are added here in one place: 400 (field errors) where a request has a body, 401
where a token is needed, 404 on one object's path (403 where only the owner may change a shared one),
429 where a throttle applies.
"""
from __future__ import annotations

import re

from rest_framework.permissions import IsAuthenticated
from rest_framework.throttling import ScopedRateThrottle

ERROR = "Error"
FIELD_ERRORS = "FieldErrors"
SCHEMAS = {
    ERROR: {
        "type": "object",
        "properties": {"detail": {"type": "string", "description": "What went wrong, in words for a person."}},
        "required": ["detail"],
    },
    FIELD_ERRORS: {
        "type": "object",
        "description": "Messages per field (a field name, or `non_field_errors`); each says what to change.",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
        "example": {"count": ["Ask for between 1 and 10,000 images."]},
    },
}
# Operations on objects that other users may see (shared generators) but only the owner may change.
OWNER_ONLY = {"generators_share_create", "generators_destroy"}


def _response(description: str, schema: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _template(path: str) -> str:
    """A path with its parameter names blanked: '/api/jobs/{pk}/' and '/api/jobs/{id}/' are the same route."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _view(callback, method: str):
    """The view instance that would answer ``method`` on this route, with its viewset action set."""
    view = callback.cls(**getattr(callback, "initkwargs", {}))
    view.action = (getattr(callback, "actions", None) or {}).get(method)
    return view


def _needs_token(view) -> bool:
    return any(isinstance(permission, IsAuthenticated) for permission in view.get_permissions())


def _throttled(view) -> bool:
    """Whether the view applies a throttle (asks the view itself, as a request would)."""
    return any(
        not isinstance(throttle, ScopedRateThrottle) or getattr(view, throttle.scope_attr, None)
        for throttle in view.get_throttles()
    )


def document_error_responses(result, generator, request, public):
    """Add the error responses (module docstring) to every operation of the schema ``result``."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(SCHEMAS)
    callbacks = {(_template(path), method.lower()): callback for path, _regex, method, callback in generator.endpoints}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            view = _view(callbacks[(_template(path), method)], method)
            if "requestBody" in operation:
                responses.setdefault("400", _response("Bad input: messages per field say what to change.", FIELD_ERRORS))
            if _needs_token(view):
                responses.setdefault("401", _response("No valid token or session: log in or send `Authorization: Token <key>`.", ERROR))
            if operation.get("operationId") in OWNER_ONLY:
                responses.setdefault("403", _response("A shared generator of another user: only its owner can change it.", ERROR))
            if "{" in path:
                responses.setdefault("404", _response("No such object, or it belongs to another user and is not shared.", ERROR))
            if _throttled(view):
                responses.setdefault("429", _response("Too many requests: wait the seconds in the Retry-After header.", ERROR))
    return result
