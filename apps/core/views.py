"""Start page, tutorial, and the one function that serves files from MEDIA_ROOT after a permission check."""
from django.http import FileResponse, Http404
from django.shortcuts import render

from apps.ml import registry

from .files import media_path


def serve_media_file(relative: str, as_attachment: bool = False) -> FileResponse:
    """Serve a file under MEDIA_ROOT. Callers check permissions first; media is never served statically."""
    if not relative:
        raise Http404("This file is not ready yet.")
    path = media_path(relative)
    if not path.is_file():
        raise Http404("This file no longer exists.")
    return FileResponse(open(path, "rb"), as_attachment=as_attachment, filename=path.name)


def home(request):
    # Plain dicts: the template engine would call the classes themselves.
    types = [{"label": cls.label, "description": cls.description} for cls in registry.all_types().values()]
    return render(request, "core/home.html", {"generator_types": types})
