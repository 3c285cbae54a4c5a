"""The OpenAPI schema: valid OpenAPI 3, every API route and method in it, errors documented; Swagger UI
served from this server (drf-spectacular-sidecar), never from a CDN."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

NOT_IN_SCHEMA = {"/api/schema/", "/api/docs/", "/api/"}  # the schema itself, its UI and the router's index


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def api_routes() -> set[tuple[str, str]]:
    """(method, path template) of every API view, read from Django's URL configuration."""
    routes = set()

    def walk(patterns, prefix):
        for entry in patterns:
            regex = prefix + entry.pattern.regex.pattern.lstrip("^").rstrip("$").replace("\\Z", "")
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, regex)
            elif isinstance(entry, URLPattern) and regex.startswith("api/") and "(?P<format>" not in regex:
                path = "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", "{id}", regex)
                if path in NOT_IN_SCHEMA:
                    continue
                actions = getattr(entry.callback, "actions", None)  # viewsets: {method: action}
                methods = actions.keys() if actions else [m for m in ("get", "post") if hasattr(entry.callback.cls, m)]
                routes.update((m.upper(), path) for m in methods if m not in ("head", "options"))  # implicit

    walk(get_resolver().url_patterns, "")
    return routes


def test_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on any violation of the OpenAPI 3 JSON schema


def test_schema_lists_every_route_and_method(schema):
    in_schema = {(method.upper(), path) for path, operations in schema["paths"].items() for method in operations}
    routes = api_routes()
    assert len(routes) >= 20
    assert in_schema == routes


def test_every_operation_documents_its_errors(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            where = f"{method.upper()} {path}"
            assert codes & {"200", "201", "202", "204"}, where
            if path != "/api/auth/token/":
                assert "401" in codes, where
            if "{id}" in path:
                assert "404" in codes, where
            if "requestBody" in operation:
                assert "400" in codes, where
    paths = schema["paths"]
    assert "403" in paths["/api/generators/{id}/share/"]["post"]["responses"]
    assert "403" in paths["/api/generators/{id}/"]["delete"]["responses"]
    for throttled in (paths["/api/datasets/"]["post"], paths["/api/generators/{id}/generate/"]["post"]):
        assert "429" in throttled["responses"]
    assert "429" not in paths["/api/datasets/"]["get"]["responses"]
    assert {p["name"] for p in paths["/api/generators/"]["get"]["parameters"]} == {"page", "kind", "status"}
    upload = schema["components"]["schemas"]["DatasetUploadRequest"]["properties"]
    assert upload["images"]["items"]["format"] == "binary"  # real file uploads, not strings


def test_swagger_ui_comes_from_this_server(client, user):
    client.force_login(user)
    html = client.get("/api/docs/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in s for s in sources)
    assert all(s.startswith("/") and not s.startswith("//") for s in sources), sources
