"""Web pages for datasets: list, detail (thumbnails, warnings, augmentation preview), owner-only image files.

The review fragment and the augmentation preview are also loaded by the training wizard's upload page.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.errors import InvalidInput
from apps.core.views import serve_media_file
from apps.ml.engine import registry
from apps.ml.engine.base import RESOLUTIONS
from apps.ml.engine.orientation import describe as describe_orientation

from . import preview, review, selectors, services
from .models import DatasetImage
from .orientation import dataset_orientation

THUMBNAILS_SHOWN = 500
DEFAULT_RESOLUTION = 64


def _resolution(request) -> int:
    """The generator image size the page is about (?resolution=), one of RESOLUTIONS."""
    try:
        value = int(request.GET.get("resolution", DEFAULT_RESOLUTION))
    except ValueError:
        return DEFAULT_RESOLUTION
    return value if value in RESOLUTIONS else DEFAULT_RESOLUTION


def _one_class_type(request) -> str:
    """The label of the generator type about to be trained (?kind=) when it learns one class only, else ""."""
    generator_type = registry.all_types().get(request.GET.get("kind", ""))
    return generator_type.label if generator_type and not generator_type.supports_labels else ""


def _review_context(dataset, resolution: int | None, *, wizard: bool = False, ask: bool = False) -> dict:
    """``resolution``: the size of the generator about to be trained (None: not known yet, as on the dataset page).
    ``wizard``: shown in the training wizard, with buttons that change how the dataset is read (one class or a
    folder per class); ``ask``: nobody has said which yet, so a zip with class folders is a question."""
    shown = resolution or DEFAULT_RESOLUTION  # the augmentation preview needs one
    folders = {} if dataset.labelled else services.folder_classes(dataset)
    can_relabel = wizard and not dataset.generators.exists()
    return {
        "classes": list(dataset.class_counts().items()),
        "folders": list(folders.items()),
        "ask": ask and can_relabel and bool(folders),
        "wizard": wizard,
        "can_relabel": can_relabel,
        "dataset": dataset,
        "review": review.review_dataset(dataset, resolution),
        "images": dataset.stored_images()[:THUMBNAILS_SHOWN],
        "more_images": max(0, dataset.image_count - THUMBNAILS_SHOWN),
        "resolution": shown,
        "preview_size": preview.preview_size(dataset.image_count, shown),
        "preview_columns": preview.preview_columns(dataset.image_count),
        # Which way the photos face, and so whether augmentation adds mirror images or turns.
        "orientation_summary": describe_orientation(dataset_orientation(dataset)),
    }


@login_required
def dataset_list(request):
    return render(request, "datasets/list.html", {"datasets": selectors.datasets_for(request.user)})


@login_required
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(selectors.datasets_for(request.user), pk=pk)
    return render(request, "datasets/detail.html", _review_context(dataset, None))


@login_required
def dataset_review(request, pk: int):
    """HTML fragment: numbers, warnings, thumbnails and the augmentation preview of one dataset."""
    dataset = get_object_or_404(selectors.datasets_for(request.user), pk=pk)
    context = _review_context(dataset, _resolution(request), wizard=True, ask=request.GET.get("ask") == "1")
    return render(request, "datasets/_review.html", {**context, "one_class_type": _one_class_type(request)})


@login_required
@require_POST
def dataset_labelling(request, pk: int):
    """The wizard's "one class, or a folder per class?": re-read the dataset that way (``labelled=true|false``);
    answers its review fragment again, with what was left out or why nothing changed (400)."""
    dataset = get_object_or_404(selectors.datasets_for(request.user), pk=pk)
    labelled = request.POST.get("labelled")
    left_out, error = [], None
    if labelled not in ("true", "false"):
        error = "Say labelled=true (a folder per class) or labelled=false (one class)."
    else:
        try:
            left_out = services.relabel_dataset(dataset=dataset, labelled=labelled == "true")
        except InvalidInput as exc:
            error = " ".join(message for messages_ in exc.errors.values() for message in messages_)
    context = {
        **_review_context(dataset, _resolution(request), wizard=True),
        "left_out": left_out,
        "labelling_error": error,
        "one_class_type": _one_class_type(request),
    }
    return render(request, "datasets/_review.html", context, status=400 if error else 200)


@login_required
def augmentation_preview(request, pk: int):
    """PNG: a few of the dataset's images (top row) and augmented copies of them (rows below)."""
    dataset = get_object_or_404(selectors.datasets_for(request.user), pk=pk)
    try:
        png = preview.augmentation_preview_png(dataset, _resolution(request))
    except ValueError:
        return HttpResponse("This dataset has no images to preview.", status=404, content_type="text/plain")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


@login_required
def image_file(request, pk: int):
    """One stored working image (?thumb=1: a small thumbnail of it)."""
    image = get_object_or_404(DatasetImage, pk=pk, dataset__owner=request.user)
    if request.GET.get("thumb"):
        try:
            with image.working.open("rb") as file:
                response = HttpResponse(review.thumbnail_png(file), content_type="image/png")
        except FileNotFoundError:
            raise Http404("This image is no longer in the storage.") from None
        response["Cache-Control"] = "private, max-age=3600"
        return response
    return serve_media_file(image.working.name)


@login_required
@require_POST
def dataset_delete(request, pk: int):
    dataset = get_object_or_404(selectors.datasets_for(request.user), pk=pk)
    name = dataset.name
    services.delete_dataset(dataset=dataset)
    messages.success(request, f"Deleted the dataset “{name}”. Generators trained on it are still there.")
    return redirect("datasets:list")
