"""Django admin for staff: inspect issues, sessions, intervals and command runs.

Sessions are read-mostly: the state, sandbox and billing fields only change through the
state machine and the jobs (a hand-edited state would skip the interval and cost bookkeeping).
Env values never appear: sessions show env names, command runs hide the encrypted values.
Billing records are never deleted (sessions/retention.py): no bulk delete of sessions, no
delete of a session that ran, of an interval or of a command run; "Terminate" closes a
session properly (its open interval billed, audited with the admin channel).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from rensei.models import Channel
from sessions.models import CommandRun, Issue, RunningInterval, Session, SessionTransition
from sessions.retention import has_billing_records
from sessions.services import request_terminate


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = ["key", "title", "org", "created_at"]
    list_filter = ["org"]
    search_fields = ["key", "title", "url"]


class TransitionInline(admin.TabularInline):
    model = SessionTransition
    extra = 0
    can_delete = False
    fields = ["at", "from_state", "to_state", "note"]
    readonly_fields = ["at", "from_state", "to_state", "note"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class IntervalInline(admin.TabularInline):
    model = RunningInterval
    extra = 0
    can_delete = False
    fields = ["started_at", "ended_at", "closed_reason"]
    readonly_fields = ["started_at", "ended_at", "closed_reason"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ["id", "org", "issue", "pool", "state", "sandbox_id", "created_at"]
    list_filter = ["state", "provider", "org"]
    search_fields = ["sandbox_id", "issue__key", "request_id"]
    list_select_related = ["org", "issue", "pool"]
    date_hierarchy = "created_at"
    inlines = [TransitionInline, IntervalInline]
    actions = ["terminate_sessions"]
    exclude = ["env"]
    readonly_fields = [
        "org",
        "pool",
        "provider",
        "runtime_kinds",
        "requirement_kinds",
        "env_names",
        "requested_pool",
        "state",
        "request_id",
        "sandbox_id",
        "template",
        "vcpu",
        "memory_mb",
        "attempts",
        "routing",
        "api_idempotency_key",
        "api_body_hash",
        "created_by",
        "created_at",
        "state_changed_at",
        "started_at",
        "ended_at",
    ]

    @admin.display(description="Env names")
    def env_names(self, obj: Session) -> str:
        return ", ".join(sorted(obj.env or {})) or "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Sessions are created through the product (pages, API) so dispatch runs.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # No bulk delete (obj None); one session only if it never ran: a session with
        # intervals or command runs is a billing record. Terminate it instead.
        if obj is None or has_billing_records(obj):
            return False
        return super().has_delete_permission(request, obj)

    @admin.action(description="Terminate selected sessions (through the state machine)")
    def terminate_sessions(self, request: HttpRequest, queryset: Any) -> None:
        done = sum(
            1
            for session in queryset.select_related("org")
            if request_terminate(session, request.user, Channel.ADMIN)
        )
        self.message_user(request, f"{done} session(s) terminating.")


@admin.register(RunningInterval)
class RunningIntervalAdmin(admin.ModelAdmin):
    list_display = ["session", "started_at", "ended_at", "closed_reason"]
    list_filter = ["closed_reason"]
    list_select_related = ["session"]
    readonly_fields = ["session", "started_at", "ended_at", "closed_reason"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Closing an interval bills it; only sessions.intervals may do that.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The meter itself: deleting one would make its running time unbillable.
        return False


@admin.register(CommandRun)
class CommandRunAdmin(admin.ModelAdmin):
    list_display = ["id", "session", "state", "exit_code", "created_by", "created_at"]
    list_filter = ["state"]
    list_select_related = ["session", "created_by"]
    search_fields = ["command"]
    exclude = ["env_encrypted"]
    readonly_fields = [
        "session",
        "command",
        "env_names",
        "timeout_seconds",
        "state",
        "exit_code",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # What ran in a sandbox stays on its session's record.
        return False
