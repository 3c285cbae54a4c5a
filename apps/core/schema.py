"""OpenAPI schema post-processing (a drf-spectacular hook): document the error answers of every endpoint.

drf-spectacular documents the successful answers from the views. The errors follow from how the API
is built, so they are added here in one place: 400 (field errors) where a request has a body or a query
parameter limited to some values, 401 where a token is needed, 404 on one object's path and on a page
past the last (403 where only the owner may change a shared one), 415 where a body of another media type
is refused, 429 where a throttle applies, 503 where files are stored or read (uploads, downloads) and the
storage cannot be reached. Every one of them is JSON, also for paths that match no endpoint
(apps/core/middleware.py).

It also writes what drf-spectacular cannot say from a serializer: a serializer that needs at least one of
some optional fields says so with ``extend_schema_serializer(extensions={AT_LEAST_ONE_OF: [...]})``,
and the schema gets ``anyOf`` of their ``required`` (a list: with at least one item).
"""

from __future__ import annotations

import copy
import re

from django.conf import settings
from rest_framework.permissions import IsAuthenticated
from rest_framework.throttling import ScopedRateThrottle

AT_LEAST_ONE_OF = "x-at-least-one-of"
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
    },
}
# Operations on objects that other users may see (shared generators) but only the owner may change.
OWNER_ONLY = {"generators_share_create", "generators_destroy"}
# Operations without a body that refuse an object in the wrong state with field errors (a generator not ready).
REFUSES_STATE = {"generators_export_retrieve"}


def _response(description: str, schema: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


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


def _page_parameter(operation) -> bool:
    return any(p.get("in") == "query" and p.get("name") == "page" for p in operation.get("parameters", []))


def _limited_query_parameter(operation) -> bool:
    """A query parameter with a closed set of values (an enum): other values are refused with a 400."""
    return any(p.get("in") == "query" and "enum" in p.get("schema", {}) for p in operation.get("parameters", []))


def _write_at_least_one_of(schemas: dict) -> None:
    """``anyOf`` one of the fields is there; a list of files counts when it has one (in a multipart body an
    empty list is no field at all)."""
    for schema in schemas.values():
        if fields := schema.pop(AT_LEAST_ONE_OF, None):
            schema["anyOf"] = [_present(field, schema["properties"][field]) for field in fields]


def _require_body_that_needs_a_field(operation: dict, schemas: dict) -> None:
    """A body whose schema needs a field (``required`` or ``anyOf`` of required) cannot be left out."""
    body = operation.get("requestBody")
    if not body:
        return
    for content in body.get("content", {}).values():
        ref = content.get("schema", {}).get("$ref", "")
        schema = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref.startswith("#/components/schemas/") else {}
        if schema.get("required") or schema.get("anyOf"):
            body["required"] = True


def _present(field: str, schema: dict) -> dict:
    if schema.get("type") == "array":
        return {"required": [field], "properties": {field: {"minItems": 1}}}
    return {"required": [field]}


def _moves_files(operation, schemas: dict) -> bool:
    """An upload (a body with files) or a download (a zip): it fails with 503 when the storage is down."""
    body = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
    ref = body.get("$ref", "")
    fields = schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {}) if ref else body.get("properties", {})
    uploads = any(
        field.get("format") == "binary" or field.get("items", {}).get("format") == "binary" for field in fields.values()
    )
    return uploads or "application/zip" in operation.get("responses", {}).get("200", {}).get("content", {})


def document_error_responses(result, generator, request, public):
    """Add the error responses (module docstring) to every operation of the schema ``result``."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    _write_at_least_one_of(schemas)
    schemas.update(copy.deepcopy(SCHEMAS))
    cap = settings.SYNTHGEN_MAX_GENERATION_COUNT  # what the generation service answers over the cap
    schemas[FIELD_ERRORS]["example"] = {"count": [f"Ask for between 1 and {cap:,} images."]}
    callbacks = {(_template(path), method.lower()): callback for path, _regex, method, callback in generator.endpoints}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            _require_body_that_needs_a_field(operation, schemas)
            responses = operation.setdefault("responses", {})
            view = _view(callbacks[(_template(path), method)], method)
            if (
                "requestBody" in operation
                or _limited_query_parameter(operation)
                or operation.get("operationId") in REFUSES_STATE
            ):
                responses.setdefault(
                    "400", _response("Bad input: messages per field say what to change.", FIELD_ERRORS)
                )
            if _needs_token(view):
                responses.setdefault(
                    "401", _response("No valid token or session: log in or send `Authorization: Token <key>`.", ERROR)
                )
            if operation.get("operationId") in OWNER_ONLY:
                responses.setdefault(
                    "403", _response("A shared generator of another user: only its owner can change it.", ERROR)
                )
            if "{" in path:
                responses.setdefault(
                    "404", _response("No such object, or it belongs to another user and is not shared.", ERROR)
                )
            if _page_parameter(operation):
                responses.setdefault(
                    "404", _response("No such page: `page` is past the last page (or not a page number).", ERROR)
                )
            if "requestBody" in operation:
                responses.setdefault(
                    "415",
                    _response("The body is not of a media type this operation reads (see its request body).", ERROR),
                )
            if _throttled(view):
                responses.setdefault(
                    "429", _response("Too many requests: wait the seconds in the Retry-After header.", ERROR)
                )
            if _moves_files(operation, schemas):
                responses.setdefault(
                    "503",
                    _response(
                        "The file storage cannot be reached (or its bucket is missing): "
                        "nothing was stored. Try again in a few minutes.",
                        ERROR,
                    ),
                )
    return result
