from django.contrib import admin

from . import services
from .models import GenerationJob


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "generator", "owner", "count", "produced", "dropped", "status", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["generator__name", "owner__username"]
    readonly_fields = [f.name for f in GenerationJob._meta.fields]

    def delete_model(self, request, obj):
        services.delete_job(job=obj)

    def delete_queryset(self, request, queryset):
        for job in queryset:
            services.delete_job(job=job)
