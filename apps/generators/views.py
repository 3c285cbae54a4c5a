"""Web pages: the two-step training wizard, the generator list and page, the live run page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from apps.core import storage
from apps.core.errors import InvalidInput
from apps.core.views import serve_media_file
from apps.datasets import services as dataset_services
from apps.datasets.forms import ImagesForm, chosen_labelled
from apps.datasets.selectors import datasets_for
from apps.ml.engine import registry
from apps.ml.engine.orientation import describe as describe_orientation

from . import estimates, selectors, services
from .forms import PRESET_HELP, GeneratorSettingsForm, TrainingDataForm, type_settings
from .presentation import STAGE_LABELS, quality_summary, stage_label

WIZARD_KEY = "training_wizard"


@login_required
def wizard_settings(request):
    """Step 1: name, generator type, size, training length."""
    form = GeneratorSettingsForm(request.POST or None, initial=request.session.get(WIZARD_KEY), user=request.user)
    if request.method == "POST" and form.is_valid():
        request.session[WIZARD_KEY] = form.cleaned_data
        return redirect("generators:wizard-data")
    learners = ", ".join(cls.label for cls in registry.all_types().values() if cls.supports_labels)
    return render(
        request,
        "generators/wizard_settings.html",
        {"form": form, "type_settings": type_settings(), "label_learners": learners, "times": estimates.wizard_times()},
    )


@login_required
def wizard_data(request):
    """Step 2: images (uploaded here, or a dataset uploaded before) and augmentation; then start training.

    With JavaScript the page uploads the images to the API in batches first (static/js/upload.js) and
    this form only names the dataset; without it, the files come with this form.
    """
    settings_data = request.session.get(WIZARD_KEY)
    if not settings_data:
        messages.info(request, "Start with step 1: name the generator and choose its type.")
        return redirect("generators:wizard")
    images_form = ImagesForm(request.POST or None, request.FILES or None)
    data_form = TrainingDataForm(request.POST or None)
    datasets = datasets_for(request.user)
    rejected = []
    chosen_dataset = request.POST.get("dataset", "")
    if request.method == "POST" and images_form.is_valid() and data_form.is_valid():
        try:
            dataset = _dataset_from_step(request, images_form, datasets, settings_data, rejected)
            chosen_dataset = str(dataset.pk)
            _check_labelling_chosen(dataset, images_form.cleaned_data["labelling"])
            generator = services.start_training(
                owner=request.user,
                name=settings_data["name"],
                dataset=dataset,
                kind=settings_data["kind"],
                resolution=int(settings_data["resolution"]),
                augment=data_form.cleaned_data["augment"],
                preset=settings_data.get("preset") or None,
                shared=settings_data.get("shared", True),
                options=settings_data.get("options") or None,
                base_generator=settings_data.get("base_generator"),
            )
        except InvalidInput as exc:
            for field, errors in exc.errors.items():
                for error in errors:
                    images_form.add_error(
                        None, f"{field}: {error}" if field not in ("images", "dataset", "archive") else error
                    )
        except storage.StorageUnavailable as exc:
            images_form.add_error(None, str(exc))
        else:
            request.session.pop(WIZARD_KEY, None)
            for item in rejected:
                messages.warning(request, f"Skipped {item['file']}: {item['reason']}")
            return redirect("generators:run", pk=selectors.latest_run(generator).pk)
    generator_type = registry.all_types().get(settings_data["kind"])
    return render(
        request,
        "generators/wizard_data.html",
        {
            "images_form": images_form,
            "data_form": data_form,
            "datasets": datasets,
            "chosen_dataset": chosen_dataset,
            "settings": settings_data,
            "kind_label": generator_type.label if generator_type else settings_data["kind"],
            "fine_tuning": generator_type.fine_tuning if generator_type else "",
            "preset_label": PRESET_HELP.get(settings_data.get("preset") or "", ""),
            "base_name": selectors.generators_for(request.user)
            .filter(pk=settings_data.get("base_generator"))
            .values_list("name", flat=True)
            .first()
            if settings_data.get("base_generator")
            else "",
        },
    )


def _dataset_from_step(request, images_form, datasets, settings_data, rejected):
    """The dataset to train on: the one chosen (read again as one class or a folder per class when the choice
    changed), or a new one from the files sent with the form."""
    existing = request.POST.get("dataset")
    files = images_form.cleaned_data["images"]
    archive = images_form.cleaned_data["archive"]
    labelled = chosen_labelled(images_form.cleaned_data["labelling"])
    if existing and not files and not archive:
        dataset = datasets.filter(pk=existing).first() if existing.isdigit() else None
        if dataset is None:
            raise InvalidInput({"dataset": "That dataset does not exist; choose one from the list or upload images."})
        if labelled is not None:
            rejected.extend(dataset_services.relabel_dataset(dataset=dataset, labelled=labelled))
        return dataset
    dataset, rejected_files = dataset_services.create_dataset(
        owner=request.user,
        name=settings_data["name"],
        files=files,
        archive=archive,
        labelled=bool(labelled),
    )
    rejected.extend(rejected_files)
    return dataset


def _check_labelling_chosen(dataset, choice: str) -> None:
    """Nothing is trained on a zip of class folders taken as one class unless the user said so."""
    if not choice and (question := dataset_services.labelling_question(dataset)):
        raise InvalidInput({"dataset": question})


@login_required
def generator_list(request):
    generators = selectors.generators_for(request.user)
    return render(request, "generators/list.html", {"generators": generators})


@login_required
@require_safe
def generator_detail(request, pk: int):
    """The generator's samples, quality, settings and owner; the generation panel (form and jobs) is the
    generation app's (``{% generate_panel %}``), and its form posts there."""
    generator = get_object_or_404(selectors.generators_for(request.user), pk=pk)
    return render_generator_page(request, generator)


def render_generator_page(request, generator, *, generate_form=None):
    """The generator's page; ``generate_form`` is a bound generate form with errors to show again."""
    generator_type = registry.all_types().get(generator.kind)
    is_owner = generator.owner_id == request.user.pk
    return render(
        request,
        "generators/detail.html",
        {
            "generator": generator,
            "type_label": generator_type.label if generator_type else generator.kind,
            "run": selectors.latest_run(generator) if is_owner else None,
            "generate_form": generate_form,
            "is_owner": is_owner,
            "quality": quality_summary(generator.quality),
            "has_copies_grid": bool(generator.files_dir)
            and storage.exists(storage.in_folder(generator.files_dir, storage.GENERATOR_COPIES_GRID)),
            "orientation_summary": describe_orientation(generator.orientation),
            # The base it was fine-tuned from, linked when this user can still see it.
            "base_visible": bool(generator.base_generator_id)
            and selectors.generators_for(request.user).filter(pk=generator.base_generator_id).exists(),
        },
    )


def _owned_generator(request, pk: int):
    generator = get_object_or_404(selectors.generators_for(request.user), pk=pk)
    return generator if generator.owner_id == request.user.pk else None


@login_required
@require_POST
def generator_share(request, pk: int):
    """Owner only: share the generator with every user, or make it private again."""
    generator = _owned_generator(request, pk)
    if generator is None:
        return HttpResponseForbidden("Only the person who trained this generator can share or unshare it.")
    shared = request.POST.get("shared") == "1"
    services.set_shared(generator=generator, shared=shared)
    messages.success(request, "Shared with every user." if shared else "Now private: only you can use it.")
    return redirect("generators:detail", pk=generator.pk)


@login_required
@require_POST
def generator_delete(request, pk: int):
    """Owner only: delete the generator, its weights and samples."""
    generator = _owned_generator(request, pk)
    if generator is None:
        return HttpResponseForbidden("Only the person who trained this generator can delete it.")
    name = generator.name
    services.delete_generator(generator=generator)
    messages.success(request, f"Deleted the generator “{name}”.")
    return redirect("generators:list")


@login_required
def run_detail(request, pk: int):
    run = get_object_or_404(selectors.runs_for(request.user), pk=pk)
    generator_type = registry.all_types().get(run.generator.kind)
    return render(
        request,
        "generators/run.html",
        {
            "run": run,
            "generator": run.generator,
            "stage_label": stage_label(run.status, run.stage),
            "stage_labels": STAGE_LABELS,
            "eta": selectors.eta_seconds(run),
            "estimate": estimates.run_comparison(run),
            "type_label": generator_type.label if generator_type else run.generator.kind,
        },
    )


@login_required
@require_POST
def run_cancel(request, pk: int):
    run = get_object_or_404(selectors.runs_for(request.user), pk=pk)
    run = services.cancel_run(run=run)
    if run.status == run.Status.CANCELLED:
        messages.info(request, "Training cancelled.")
    elif run.is_active:
        messages.info(request, "Cancelling: training stops at its next step.")
    else:
        messages.info(request, f"This run had already finished ({run.status}); there was nothing to cancel.")
    return redirect("generators:run", pk=run.pk)


@login_required
def sample_grid(request, pk: int):
    generator = get_object_or_404(selectors.generators_for(request.user), pk=pk)
    return serve_media_file(generator.sample_grid)


@login_required
def copies_grid(request, pk: int):
    """The generated images closest to a training image, each beside that training image."""
    generator = get_object_or_404(selectors.generators_for(request.user), pk=pk)
    copies = storage.in_folder(generator.files_dir, storage.GENERATOR_COPIES_GRID) if generator.files_dir else ""
    return serve_media_file(copies)


@login_required
def run_grid(request, pk: int):
    run = get_object_or_404(selectors.runs_for(request.user), pk=pk)
    return serve_media_file(run.latest_grid)
