"""Web pages for a generation job: live progress, gallery, zip download."""
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from apps.core.views import serve_media_file

from . import selectors

GALLERY_SIZE = 48


@login_required
def job_detail(request, pk: int):
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    gallery = [f"{i + 1:06d}.png" for i in range(min(job.count, GALLERY_SIZE))] if job.status == "done" else []
    return render(request, "generation/job.html", {"job": job, "gallery": gallery})


@login_required
def job_download(request, pk: int):
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    return serve_media_file(job.archive, as_attachment=True)


@login_required
def job_image(request, pk: int, name: str):
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    if not name.endswith(".png") or "/" in name or not job.output_dir:
        raise Http404("No such image.")
    return serve_media_file(f"{job.output_dir}/{name}")
