from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from rensei.credentials import remove_credential, set_credential
from rensei.forms import CredentialAdminForm
from rensei.models import ApiToken, AuditEvent, Channel, Credential, Membership, Organization
from rensei.tokens import revoke


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role", "org"]
    search_fields = ["user__username", "user__email", "org__name", "org__slug"]
    autocomplete_fields = ["user", "org"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "org", "actor_label", "action", "target", "channel"]
    list_filter = ["channel", "action", "org"]
    search_fields = ["action", "target", "actor_label"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    """The key is never shown nor editable in clear: a write-only field goes through
    ``set_credential`` (audited, channel admin); deleting goes through ``remove_credential``."""

    form = CredentialAdminForm
    list_display = ["org", "provider", "key", "updated_at", "updated_by"]
    list_filter = ["provider"]
    list_select_related = ["org", "updated_by"]
    search_fields = ["org__name", "org__slug"]
    fields = ["org", "provider", "key", "new_secret", "created_at", "created_by", "updated_at"]
    readonly_fields = ["key", "created_at", "created_by", "updated_at"]

    @method_decorator(sensitive_post_parameters("new_secret"))
    def changeform_view(self, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().changeform_view(*args, **kwargs)

    @admin.display(description="Key")
    def key(self, obj: Credential) -> str:
        return f"••••{obj.last_four}" if obj.last_four else "—"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Credential]:
        return super().get_queryset(request).defer("secret_encrypted")

    def get_readonly_fields(self, request: HttpRequest, obj: Credential | None = None) -> Any:
        base = list(self.readonly_fields)
        return [*base, "org", "provider"] if obj is not None else base

    def get_fields(self, request: HttpRequest, obj: Credential | None = None) -> Any:
        return ["org", "provider", "new_secret"] if obj is None else self.fields

    def save_model(self, request: HttpRequest, obj: Credential, form: Any, change: bool) -> None:
        secret = form.cleaned_data.get("new_secret", "")
        if not secret:
            return  # nothing editable changed
        org = obj.org if change else form.cleaned_data["org"]
        provider = obj.provider if change else form.cleaned_data["provider"]
        saved = set_credential(org, provider, secret, actor=request.user, channel=Channel.ADMIN)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: Credential) -> None:
        remove_credential(obj.org, obj.provider, actor=request.user, channel=Channel.ADMIN)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for row in queryset.select_related("org"):
            remove_credential(row.org, row.provider, actor=request.user, channel=Channel.ADMIN)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Read-mostly: tokens are created where their plaintext can be shown once (the API tokens
    page, ``create_api_token``); here staff can find and revoke them. The hash is not shown."""

    list_display = ["name", "org", "prefix", "created_by", "created_at", "last_used_at", "revoked"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "org"]
    list_select_related = ["org", "created_by"]
    search_fields = ["name", "prefix", "org__name", "org__slug"]
    fields = readonly_fields = (
        "org",
        "name",
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    actions = ["revoke_tokens"]

    @admin.display(boolean=True, description="Revoked")
    def revoked(self, obj: ApiToken) -> bool:
        return obj.is_revoked

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # revoked tokens stay listed

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = sum(
            revoke(token, actor=request.user, channel=Channel.ADMIN)
            for token in queryset.select_related("org")
        )
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
