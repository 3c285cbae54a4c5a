from django.contrib import admin

from .models import StorageCheck


@admin.register(StorageCheck)
class StorageCheckAdmin(admin.ModelAdmin):
    """The storage checks' results, newest first (manage.py check_storage, and the beat's daily run)."""

    list_display = ["started_at", "trigger", "result", "missing", "orphans", "orphan_bytes", "removed", "repair"]
    list_filter = ["clean", "trigger", "repair"]
    readonly_fields = [f.name for f in StorageCheck._meta.fields]

    @admin.display(description="result")
    def result(self, check: StorageCheck) -> str:
        return check.summary

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
