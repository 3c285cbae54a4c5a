"""Web pages for generation: starting a job from a generator's page; a job's live progress, gallery, zip download."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core import storage
from apps.core.errors import InvalidInput
from apps.core.views import serve_media_file
from apps.generators.selectors import generators_for
from apps.generators.views import render_generator_page
from apps.ml.engine import registry

from . import selectors, services
from .export import GALLERY_SIZE  # the images stored one by one for the page
from .forms import GenerateForm
from .models import GenerationJob
from .presentation import class_bars


def _gallery(job: GenerationJob) -> list[str]:
    """Names (under the job's folder; ``class/000001.png`` for a conditional job) of the images stored for the
    page (none until it is done)."""
    if job.status != GenerationJob.Status.DONE or not job.output_dir:
        return []
    prefix = job.output_dir.rstrip("/") + "/"
    names = [name[len(prefix) :] for name in storage.walk(job.output_dir) if name.startswith(prefix)]
    return sorted(name for name in names if name.endswith(".png"))[:GALLERY_SIZE]


def _context(job: GenerationJob) -> dict:
    return {
        "job": job,
        "gallery": _gallery(job),
        "gallery_size": GALLERY_SIZE,
        "class_bars": class_bars(job.generator.classes, job.counts),
    }


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
    if "zip" in job.missing_files:
        return HttpResponse(job.lost_message, status=410, content_type="text/plain")
    return serve_media_file(job.archive, as_attachment=True)


@login_required
def job_image(request, pk: int, name: str):
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    parts = name.split("/")
    if not name.endswith(".png") or len(parts) > 2 or any(p in ("", ".", "..") for p in parts) or not job.output_dir:
        raise Http404("No such image.")
    return serve_media_file(f"{job.output_dir}/{name}")


_FORM_FIELDS = {"class": "class_name"}  # the service's error keys that the form names otherwise


@login_required
@require_POST
def start_job(request, generator_pk: int):
    """The generate form of a generator's page: start a job and go to it, or show the page again with the errors."""
    generator = get_object_or_404(generators_for(request.user), pk=generator_pk)
    generator_type = registry.all_types().get(generator.kind)
    uses_steps = bool(generator_type and generator_type.uses_sampling_steps)
    form = GenerateForm(request.POST, generator=generator)
    if form.is_valid():
        try:
            job = services.start_generation(
                owner=request.user,
                generator=generator,
                seed=form.cleaned_data["seed"],
                steps=form.cleaned_data["steps"] if uses_steps else None,
                filter_images=form.cleaned_data["filter_images"],
                **form.request(),
            )
        except InvalidInput as exc:
            for field, errors in exc.errors.items():
                for error in errors:
                    form.add_error(
                        _FORM_FIELDS.get(field, field) if _FORM_FIELDS.get(field, field) in form.fields else None, error
                    )
        else:
            return redirect("generation:job", pk=job.pk)
    return render_generator_page(request, generator, generate_form=form)
