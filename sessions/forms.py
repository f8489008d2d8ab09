"""Forms for the session pages: list filters, New session, the exec console."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Case, IntegerField, QuerySet, Value, When

from pools.kinds import default_kinds, parse_provides
from pools.models import CapacityPool
from pools.providers import PROVIDERS
from rensei import inputs
from rensei.models import Organization
from sessions.models import LIVE_STATES, TERMINAL_STATES, SessionState

# E2B's substrate defaults: the choices when no provider module declares its own yet.
E2B_RUNTIME_KINDS = ("npm", "python-pip", "http", "mcp-server", "a2a-protocol")
E2B_REQUIREMENT_KINDS = ("long-running", "network-egress", "git", "full-history-clone")

# Sorting by state follows the life cycle (queued … running … terminated, failed, lost: the
# order SessionState declares), not the alphabet: the list annotates ``state_rank`` with this.
STATE_RANK = Case(
    *[When(state=state, then=Value(rank)) for rank, state in enumerate(SessionState.values)],
    default=Value(len(SessionState.values)),
    output_field=IntegerField(),
)
SORTS = {
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
    "state": ("state_rank", "-created_at", "-id"),
    "-state": ("-state_rank", "-created_at", "-id"),
    "issue": ("issue__key", "-created_at", "-id"),
    "-issue": ("-issue__key", "-created_at", "-id"),
}
# The State filter's two group choices, beside one choice per state.
STATE_GROUPS = {
    "live": ("Live (not ended)", LIVE_STATES),
    "ended": ("Ended", TERMINAL_STATES),
}
SINCE_HOURS = {"24h": 24, "7d": 24 * 7}


def kind_lists() -> tuple[list[str], list[str]]:
    """(runtime kinds, requirement kinds) every registered provider declares."""
    runtime: list[str] = []
    requirement: list[str] = []
    for provider in PROVIDERS:
        r, q = default_kinds(provider)
        runtime += [k for k in r if k not in runtime]
        requirement += [k for k in q if k not in requirement]
    return runtime or list(E2B_RUNTIME_KINDS), requirement or list(E2B_REQUIREMENT_KINDS)


def checked(type_: object, value: object) -> object:
    """``value`` by the shared input rule ``type_`` (rensei/inputs.py), as a form error."""
    try:
        return inputs.check(type_, value)
    except inputs.InputError as exc:
        raise forms.ValidationError(exc.message) from None


def _org_pools(org: Organization) -> QuerySet[CapacityPool]:
    return CapacityPool.objects.filter(org=org).order_by("order", "name")


class SessionFilterForm(forms.Form):
    """The list's GET filters. Invalid values are reported and ignored, never a 500.

    ``state`` takes states and the groups ``live`` and ``ended`` (repeatable, any mix:
    the dashboard links to ``?state=queued&state=provisioning``).
    """

    state = forms.MultipleChoiceField(
        choices=[(key, label) for key, (label, _) in STATE_GROUPS.items()]
        + list(SessionState.choices),
        required=False,
    )
    pool = forms.ModelChoiceField(
        queryset=CapacityPool.objects.none(), required=False, empty_label="Any pool"
    )
    issue = forms.CharField(max_length=64, required=False, label="Issue key")
    since = forms.ChoiceField(
        choices=[("", "Any time"), ("24h", "Last 24 hours"), ("7d", "Last 7 days")],
        required=False,
        label="Changed",
    )
    sort = forms.ChoiceField(choices=[(k, k) for k in SORTS], required=False)

    def __init__(self, *args: Any, org: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["pool"].queryset = _org_pools(org)  # type: ignore[attr-defined]

    def valid(self, name: str) -> Any:
        """The cleaned value of one field, or None when it was invalid or empty."""
        self.is_valid()
        return self.cleaned_data.get(name) or None

    def states(self) -> set[str] | None:
        """The states the State filter asks for, groups expanded; None for any state."""
        picked = self.valid("state")
        if not picked:
            return None
        out: set[str] = set()
        for value in picked:
            out |= set(STATE_GROUPS[value][1]) if value in STATE_GROUPS else {value}
        return out

    def state_summary(self) -> str:
        """What the collapsed State filter says: "Any state", "Live (not ended)", "Running,
        Paused"."""
        picked = self.valid("state") or []
        labels = dict(self.fields["state"].choices)  # type: ignore[attr-defined]
        return ", ".join(str(labels[v]) for v in picked) or "Any state"


class NewSessionForm(forms.Form):
    # Lengths as widget attributes only: the shared rules below say what is wrong, in the
    # API's words (a Django max_length would answer first, in its own).
    issue_key = forms.CharField(
        widget=forms.TextInput(attrs={"maxlength": inputs.MAX_ISSUE_KEY}),
        required=False,
        label="Issue key",
        help_text="e.g. ENG-142. Leave empty for an unattributed session.",
    )
    issue_title = forms.CharField(
        widget=forms.TextInput(attrs={"maxlength": inputs.MAX_ISSUE_TITLE}),
        required=False,
        label="Issue title",
    )
    runtime_kinds = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Runtime kinds"
    )
    requirement_kinds = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Requirement kinds"
    )
    toolchains = forms.CharField(
        max_length=400,
        required=False,
        label="Toolchains",
        help_text="Comma separated, e.g. toolchain:go, toolchain:node (a pool must "
        "provide them through its runtime provides override).",
    )
    pool = forms.ModelChoiceField(
        queryset=CapacityPool.objects.none(),
        required=False,
        empty_label="Route automatically (first pool that fits)",
        help_text="Pick a pool to try it by hand.",
    )

    def __init__(self, *args: Any, org: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        runtime, requirement = kind_lists()
        self.fields["runtime_kinds"].choices = [(k, k) for k in runtime]  # type: ignore[attr-defined]
        self.fields["requirement_kinds"].choices = [(k, k) for k in requirement]  # type: ignore[attr-defined]
        self.fields["pool"].queryset = _org_pools(org).filter(enabled=True)  # type: ignore[attr-defined]

    # The API's rules for the same fields (issue.key, issue.title), with the same messages.
    def clean_issue_key(self) -> str:
        key: str = self.cleaned_data["issue_key"]
        return str(checked(inputs.IssueKey, key)) if key else ""

    def clean_issue_title(self) -> str:
        return str(checked(inputs.IssueTitle, self.cleaned_data["issue_title"]))

    def clean_toolchains(self) -> list[str]:
        # ``go`` is short for ``toolchain:go``; then the one kinds rule, as for the API.
        items = [
            item if item.lower().startswith("toolchain:") else f"toolchain:{item}"
            for item in self.cleaned_data["toolchains"].replace(",", " ").split()
        ]
        try:
            return parse_provides(items)
        except inputs.InputError as exc:
            raise forms.ValidationError(exc.message) from None


class ExecForm(forms.Form):
    command = forms.CharField(
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 2,
                "spellcheck": "false",
                "class": "font-monospace",
                "maxlength": inputs.MAX_COMMAND,
            }
        ),
        help_text="Runs through /bin/bash: pipes, && and nohup work.",
    )
    env = forms.CharField(
        required=False,
        label="Environment",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "class": "font-monospace"}),
        help_text="One NAME=value per line, for this command only. Values are not stored.",
    )
    timeout = forms.IntegerField(
        initial=inputs.DEFAULT_EXEC_TIMEOUT,
        widget=forms.NumberInput(
            attrs={"min": inputs.MIN_EXEC_TIMEOUT, "max": inputs.MAX_EXEC_TIMEOUT}
        ),
        label="Timeout (seconds)",
        help_text="Default 600 s (10 minutes).",
    )

    # The API's rules for the same fields (command, env, timeout), with the same messages.
    def clean_command(self) -> str:
        return str(checked(inputs.Command, self.cleaned_data["command"]))

    def clean_timeout(self) -> int:
        value = checked(inputs.ExecTimeout, self.cleaned_data["timeout"])
        assert isinstance(value, int)
        return value

    def clean_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["env"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            name = name.strip()
            if not sep:
                raise forms.ValidationError(f"Line {number}: expected NAME=value.")
            try:
                env[inputs.env_name(name)] = inputs.env_value(name, value)
            except inputs.InputError as exc:
                raise forms.ValidationError(f"Line {number}: {exc.message}") from None
        return dict(checked(inputs.EnvMap, env))  # type: ignore[call-overload]
