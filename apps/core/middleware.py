"""Every answer under /api/ is JSON, errors included.

The API's views answer JSON themselves (DRF). What reaches a client from Django instead is its HTML
error page: a path under /api/ that matches no endpoint (404), or an error raised before a view runs
(e.g. 400 for a bad Host header, 500). This middleware turns those into the API's documented error
shape, ``{"detail": "..."}``, with the same status code.
"""

from __future__ import annotations

from http import HTTPStatus

from django.http import JsonResponse

API_PREFIX = "/api/"
NOT_FOUND = "No API endpoint at this address. The endpoints are listed at /api/docs/ (schema: /api/schema/)."
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def _is_json(response) -> bool:
    content_type = (response.get("Content-Type") or "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


class ApiJsonErrorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path_info.startswith(API_PREFIX) or response.status_code < 400 or _is_json(response):
            return response
        status = response.status_code
        if status == 404:
            detail = NOT_FOUND
        else:
            try:
                detail = HTTPStatus(status).phrase + "."
            except ValueError:
                detail = "Error."
        answer = JsonResponse({"detail": detail}, status=status)
        for header in KEPT_HEADERS:
            if header in response:
                answer[header] = response[header]
        return answer
