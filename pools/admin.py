"""Django admin for pools (staff fixes) and their health checks (read-only).

The config goes through the same schema as the pool form, so the admin can never save a
config the jobs would reject. Changes are audited with the admin channel.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from pools.config import MASK, masked
from pools.env import config_keeping_stored
from pools.kinds import parse_provides
from pools.models import CapacityPool, PoolHealthCheck
from pools.providers import provider_class
from pools.providers.base import ConfigError
from rensei import audit
from rensei.models import Channel


class CapacityPoolAdminForm(forms.ModelForm):
    class Meta:
        model = CapacityPool
        fields = [
            "org",
            "name",
            "provider",
            "config",
            "runtime_provides",
            "order",
            "concurrency_cap",
            "enabled",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Env values are write-only here too: the page shows ••••, which keeps the stored value.
        self.initial["config"] = masked(self.instance.config)
        self.fields["config"].help_text = (
            f"envVars values show as {MASK}: leave {MASK} to keep a stored value, write a new "
            "value to replace it, remove the name to remove the variable. Values are "
            "encrypted at rest."
        )

    def clean_runtime_provides(self) -> list[str]:
        value = self.cleaned_data.get("runtime_provides")
        if value is None:
            return []
        if not isinstance(value, list):
            raise forms.ValidationError('Must be a JSON list of kinds, e.g. ["toolchain:go"].')
        try:
            return parse_provides(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("provider") or self.instance.provider
        if "config" in cleaned and kind:
            try:
                raw = config_keeping_stored(cleaned["config"], self.instance.config)
                cleaned["config"] = provider_class(kind).validate_config(raw)
            except LookupError:
                self.add_error("provider", f"Unknown provider {kind!r}.")
            except ConfigError as exc:
                for key, messages in exc.errors.items():
                    for message in messages:
                        self.add_error("config", f"{key}: {message}")
        return cleaned


class HealthCheckInline(admin.TabularInline):
    model = PoolHealthCheck
    extra = 0
    can_delete = False
    max_num = 0
    fields = ("started_at", "status", "output", "duration_ms", "sandbox_id")
    readonly_fields = ("started_at", "status", "output", "duration_ms", "sandbox_id")
    ordering = ["-started_at"]
    show_change_link = True


@admin.register(CapacityPool)
class CapacityPoolAdmin(admin.ModelAdmin):
    form = CapacityPoolAdminForm
    list_display = [
        "name",
        "org",
        "provider",
        "order",
        "enabled",
        "health_status",
        "health_checked_at",
    ]
    list_filter = ["provider", "enabled", "health_status", "org"]
    search_fields = ["name", "org__name", "org__slug"]
    list_select_related = ["org"]
    readonly_fields = [
        "health_status",
        "health_checked_at",
        "health_output",
        "health_duration_ms",
        "created_at",
        "updated_at",
    ]
    inlines = [HealthCheckInline]

    def save_model(self, request: HttpRequest, obj: CapacityPool, form: Any, change: bool) -> None:
        before = None
        if change:
            before = CapacityPool.objects.filter(pk=obj.pk).values("config", "enabled").first()
        super().save_model(request, obj, form, change)
        detail: dict[str, Any] = {"fields": sorted(form.changed_data)}
        if before is not None and before["config"] != obj.config:
            detail["config"] = {"before": masked(before["config"]), "after": masked(obj.config)}
        audit.record(
            org=obj.org,
            action="pool.changed" if change else "pool.created",
            target=str(obj),
            actor=request.user,
            channel=Channel.ADMIN,
            detail=detail,
        )

    def delete_model(self, request: HttpRequest, obj: CapacityPool) -> None:
        org, name = obj.org, str(obj)
        super().delete_model(request, obj)
        audit.record(
            org=org, action="pool.deleted", target=name, actor=request.user, channel=Channel.ADMIN
        )

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in list(queryset.select_related("org")):
            self.delete_model(request, obj)


@admin.register(PoolHealthCheck)
class PoolHealthCheckAdmin(admin.ModelAdmin):
    list_display = ["pool", "status", "started_at", "finished_at", "duration_ms", "channel"]
    list_filter = ["status", "channel"]
    search_fields = ["pool__name", "sandbox_id", "output"]
    list_select_related = ["pool"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
