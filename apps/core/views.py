"""Start page, tutorial, and the one function that serves stored files after a permission check."""

import mimetypes
from pathlib import PurePosixPath

from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import render

from apps.ml.engine import registry

from . import storage


def serve_media_file(relative: str, as_attachment: bool = False) -> HttpResponse:
    """Stream a stored file (apps/core/storage.py) to the client. Callers check permissions first; media is
    never served statically. Storage that cannot be reached answers 503."""
    if not relative:
        raise Http404("This file is not ready yet.")
    try:
        stream, size = storage.open_stream(relative)
    except FileNotFoundError:
        raise Http404("This file no longer exists.") from None
    except storage.StorageUnavailable as exc:
        return HttpResponse(f"{exc} Try again in a few minutes.", status=503, content_type="text/plain")
    name = PurePosixPath(relative).name
    response = FileResponse(
        stream,
        as_attachment=as_attachment,
        filename=name,
        content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
    )
    response["Content-Length"] = str(size)
    return response


def home(request):
    # Plain dicts: the template engine would call the classes themselves.
    types = [{"label": cls.label, "description": cls.description} for cls in registry.all_types().values()]
    return render(request, "core/home.html", {"generator_types": types})
