from django import forms
from django.contrib import admin, messages
from django.http import FileResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from apps.core.errors import InvalidInput
from apps.ml.engine import registry

from . import portable, services
from .models import Generator, TrainingRun
from .presentation import registry_columns


class KindFilter(admin.SimpleListFilter):
    """Generator types from the registry, so a new type shows up without admin changes."""

    title = "type"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return registry.choices()

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


class TrainingRunInline(admin.TabularInline):
    model = TrainingRun
    fields = ["status", "stage", "step", "total_steps", "device", "started_at", "finished_at", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A file from GET /api/generators/{id}/export/ or this admin's Export action.")
    name = forms.CharField(max_length=120, required=False, help_text="Left out: the exported generator's name.")
    shared = forms.BooleanField(required=False, help_text="Share it with every user.")


@admin.register(Generator)
class GeneratorAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "lineage",
        "kind",
        "resolution",
        "class_list",
        "status",
        "verdict",
        "usefulness",
        "photo_equivalent",
        "owner",
        "shared",
        "dataset",
        "created_at",
    ]
    list_filter = [KindFilter, "status", "shared", "resolution", "augment", "preset"]
    search_fields = ["name", "owner__username", "dataset__name"]
    readonly_fields = [
        "kind",
        "resolution",
        "channels",
        "base_generator",
        "base_name",
        "classes",
        "config",
        "files_dir",
        "sample_grid_preview",
        "quality",
        "warnings",
    ]
    inlines = [TrainingRunInline]
    actions = ["share", "unshare", "export"]
    change_list_template = "admin/generators/generator/change_list.html"  # adds "Import a generator"

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="generators_generator_import"),
            *super().get_urls(),
        ]

    def import_view(self, request):
        """Import an exported generator (apps.generators.portable) as a ready generator of the signed-in admin."""
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                generator = portable.import_generator(
                    owner=request.user,
                    file=form.cleaned_data["file"],
                    name=form.cleaned_data["name"] or None,
                    shared=form.cleaned_data["shared"],
                )
            except InvalidInput as refused:
                for problem in refused.errors.get("file", []):
                    form.add_error("file", problem)
            else:
                self.message_user(
                    request, f"Imported '{generator.name}' ({generator.kind}, {generator.resolution} px)."
                )
                return redirect("admin:generators_generator_change", generator.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": "Import a generator",
        }
        return TemplateResponse(request, "admin/generators/generator/import.html", context)

    @admin.action(description="Export (download one file)")
    def export(self, request, queryset):
        """One ready generator as an export file (GET /api/generators/{id}/export/ gives the same)."""
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one generator to export.", level=messages.WARNING)
            return None
        generator = queryset.get()
        try:
            file = portable.export_generator(generator=generator)
        except InvalidInput as refused:
            self.message_user(request, " ".join(sum(refused.errors.values(), [])), level=messages.WARNING)
            return None
        return FileResponse(
            file, as_attachment=True, filename=portable.export_filename(generator), content_type="application/zip"
        )

    @admin.display(description="started from")
    def lineage(self, obj):
        """ "fine-tuned from <base>" (the name stays when the base is deleted); "—" when trained from scratch."""
        return obj.lineage or "—"

    @admin.display(description="classes")
    def class_list(self, obj):
        """A conditional generator's classes (one generator learns them all); "—" for one class."""
        return ", ".join(c["name"] for c in obj.classes) or "—"

    @admin.display(description="quality verdict")
    def verdict(self, obj):
        return registry_columns(obj.quality)["verdict"]

    @admin.display(description="gain beyond augmentation")
    def usefulness(self, obj):
        return registry_columns(obj.quality)["usefulness"]

    @admin.display(description="worth in real photos")
    def photo_equivalent(self, obj):
        """A conditional generator's photo equivalent (quality.dataset_usefulness.photo_equivalent) in words."""
        return registry_columns(obj.quality)["photo_equivalent"]

    @admin.display(description="sample grid")
    def sample_grid_preview(self, obj):
        if not obj.sample_grid:
            return "—"
        return format_html('<img src="{}" style="max-width:512px">', reverse("generators:sample-grid", args=[obj.pk]))

    @admin.action(description="Share with every user")
    def share(self, request, queryset):
        for generator in queryset:
            services.set_shared(generator=generator, shared=True)

    @admin.action(description="Make private")
    def unshare(self, request, queryset):
        for generator in queryset:
            services.set_shared(generator=generator, shared=False)

    def delete_model(self, request, obj):
        services.delete_generator(generator=obj)

    def delete_queryset(self, request, queryset):
        for generator in queryset:
            services.delete_generator(generator=generator)


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "generator", "status", "stage", "step", "total_steps", "device", "started_at", "finished_at"]
    list_filter = ["status", "stage", "device"]
    search_fields = ["generator__name", "error"]
    readonly_fields = [f.name for f in TrainingRun._meta.fields]
    actions = ["cancel"]

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        for run in queryset:
            services.cancel_run(run=run)
