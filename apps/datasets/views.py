"""Web pages for datasets: list, detail with thumbnails, and the owner-only image files."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.views import serve_media_file

from . import selectors, services
from .models import DatasetImage


@login_required
def dataset_list(request):
    return render(request, "datasets/list.html", {"datasets": selectors.datasets_for(request.user)})


@login_required
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(selectors.datasets_for(request.user), pk=pk)
    return render(request, "datasets/detail.html", {"dataset": dataset, "images": dataset.images.all()[:500]})


@login_required
def image_file(request, pk: int):
    image = get_object_or_404(DatasetImage, pk=pk, dataset__owner=request.user)
    return serve_media_file(image.working.name)


@login_required
@require_POST
def dataset_delete(request, pk: int):
    dataset = get_object_or_404(selectors.datasets_for(request.user), pk=pk)
    services.delete_dataset(dataset=dataset)
    return redirect("datasets:list")
