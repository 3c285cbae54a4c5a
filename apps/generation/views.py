"""Web pages for a generation job: live progress, gallery, zip download."""
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from apps.core.views import serve_media_file

from . import selectors
from .models import GenerationJob

GALLERY_SIZE = 48


def _gallery(job: GenerationJob) -> list[str]:
    """File names of the first GALLERY_SIZE images the job wrote (none until it is done)."""
    if job.status != GenerationJob.Status.DONE or not job.output_dir:
        return []
    try:
        _, files = default_storage.listdir(job.output_dir)
    except FileNotFoundError:
        return []
    return sorted(name for name in files if name.endswith(".png"))[:GALLERY_SIZE]


def _context(job: GenerationJob) -> dict:
    return {"job": job, "gallery": _gallery(job), "gallery_size": GALLERY_SIZE}


@login_required
def job_detail(request, pk: int):
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    return render(request, "generation/job.html", _context(job))


@login_required
def job_gallery(request, pk: int):
    """HTML fragment: the download button and the gallery; the job page loads it when the job is done."""
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    return render(request, "generation/_results.html", _context(job))


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
