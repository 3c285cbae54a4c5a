from django.contrib import admin
from django.db.models import Count

from . import services
from .models import Dataset, DatasetImage


class DatasetImageInline(admin.TabularInline):
    model = DatasetImage
    fields = ["original_name", "width", "height", "mode", "format", "size_bytes"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "image_count", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name", "owner__username"]
    inlines = [DatasetImageInline]
    actions = ["delete_with_files"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_image_count=Count("images"))

    @admin.display(ordering="_image_count", description="images")
    def image_count(self, obj):
        return obj._image_count

    def delete_model(self, request, obj):
        services.delete_dataset(dataset=obj)

    def delete_queryset(self, request, queryset):
        for dataset in queryset:
            services.delete_dataset(dataset=dataset)
