"""Core pages: the org switcher, Settings → Integrations and Settings → API tokens."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import F, OrderBy
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect

from rensei import credentials, providers, tokens
from rensei.access import get_for_org, org_of, org_view
from rensei.forms import ApiTokenForm, CredentialForm
from rensei.key_test import test_key
from rensei.middleware import SESSION_KEY
from rensei.models import ApiToken, AuditEvent, Channel, Membership
from rensei.providers import ConnectionTest

AUDIT_ROWS = 20
TOKENS_PER_PAGE = 25
# Never-used tokens sort last either way, on SQLite and PostgreSQL alike.
TOKEN_SORTS: dict[str, tuple[str | OrderBy, ...]] = {
    "name": ("name", "-created_at"),
    "-name": ("-name", "-created_at"),
    "created": ("created_at", "id"),
    "-created": ("-created_at", "-id"),
    "last_used": (F("last_used_at").asc(nulls_last=True), "-created_at"),
    "-last_used": (F("last_used_at").desc(nulls_last=True), "-created_at"),
}


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers fetch on their own: the SVG icon base.html links."""
    # Resolved per request: with the manifest storage the file name carries its hash.
    response = redirect(static("favicon.svg"))
    response["Cache-Control"] = "public, max-age=86400"
    return response


@login_required
@require_POST
def switch_org(request: HttpRequest) -> HttpResponse:
    """Make another of the user's orgs the active one. Not a member → 404."""
    try:
        org_id = int(request.POST.get("org", ""))
    except ValueError:
        raise Http404("No such organisation.") from None
    if not Membership.objects.filter(user_id=cast(int, request.user.pk), org_id=org_id).exists():
        raise Http404("No such organisation.")
    request.session[SESSION_KEY] = org_id
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/"
    return redirect(next_url)


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _back(request: HttpRequest, url: str) -> HttpResponse:
    """After a successful write: htmx reloads the page (messages show there), else redirect."""
    return HttpResponseClientRedirect(url) if _is_htmx(request) else redirect(url)


# --- Settings → Integrations ---------------------------------------------------------------


def _known_provider(provider: str) -> str:
    if provider not in providers.kinds():
        raise Http404("No such provider.")
    return provider


def _card(
    request: HttpRequest,
    provider: str,
    form: CredentialForm | None = None,
    test: ConnectionTest | None = None,
) -> dict[str, Any]:
    status = credentials.credential_status(org_of(request), provider)
    return {
        "status": status,
        "form": form or CredentialForm(provider=provider, label=status.label),
        "test": test,
    }


def _audit_events(request: HttpRequest) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(org=org_of(request))[:AUDIT_ROWS])


def _integrations_page(
    request: HttpRequest, replace: dict[str, dict[str, Any]] | None = None, status: int = 200
) -> HttpResponse:
    replace = replace or {}
    cards = [replace.get(kind) or _card(request, kind) for kind in providers.kinds()]
    return render(
        request,
        "rensei/integrations.html",
        {"title": "Integrations", "cards": cards, "events": _audit_events(request)},
        status=status,
    )


@org_view("integrations.manage")
def integrations(request: HttpRequest) -> HttpResponse:
    return _integrations_page(request)


@sensitive_post_parameters("secret")
@org_view("integrations.manage")
@require_POST
def integration_key(request: HttpRequest, provider: str) -> HttpResponse:
    """Add or replace the org's key. The key is write-only: errors never echo it."""
    provider = _known_provider(provider)
    label = credentials.provider_label(provider)
    form = CredentialForm(request.POST, provider=provider, label=label)
    if not form.is_valid():
        card = _card(request, provider, form=form)
        if _is_htmx(request):
            return render(request, "rensei/integrations.html#provider-card", {"card": card})
        return _integrations_page(request, {provider: card}, status=400)
    row = credentials.set_credential(
        org_of(request), provider, form.cleaned_data["secret"], request.user, Channel.WEB
    )
    messages.success(request, f"{label} key ending ••••{row.last_four} saved.")
    return _back(request, reverse("integrations"))


@org_view("integrations.manage")
@require_http_methods(["GET", "POST"])
def integration_remove(request: HttpRequest, provider: str) -> HttpResponse:
    """GET: the confirm page (for browsers without JS); POST: remove the org's key."""
    provider = _known_provider(provider)
    status = credentials.credential_status(org_of(request), provider)
    if request.method == "POST":
        if credentials.remove_credential(org_of(request), provider, request.user, Channel.WEB):
            messages.success(request, f"{status.label} key removed.")
        else:
            messages.info(request, f"There was no {status.label} key to remove.")
        return _back(request, reverse("integrations"))
    if status.credential is None:
        messages.info(request, f"There is no {status.label} key to remove.")
        return redirect("integrations")
    fallback = (
        f" Jobs will then use {status.env_name} from the server environment."
        if status.env_configured
        else f" Sessions cannot start on {status.label} pools until a key is added again."
    )
    return render(
        request,
        "rensei/confirm.html",
        {
            "title": f"Remove the {status.label} key?",
            "question": (
                f"Remove the {status.label} key ending ••••{status.credential.last_four}?"
                + fallback
            ),
            "action": reverse("integration_remove", args=[provider]),
            "button": "Remove key",
            "cancel": reverse("integrations"),
        },
    )


@org_view("integrations.manage")
@require_POST
def integration_test(request: HttpRequest, provider: str) -> HttpResponse:
    """One cheap authenticated call with the credential jobs would use, result in words."""
    provider = _known_provider(provider)
    result = test_key(org_of(request), provider, actor=request.user, channel=Channel.WEB)
    card = _card(request, provider, test=result)
    if _is_htmx(request):
        return render(
            request,
            "rensei/integrations.html#test-result-swap",
            {"card": card, "events": _audit_events(request)},
        )
    return _integrations_page(request, {provider: card})


# --- Settings → API tokens -----------------------------------------------------------------


def _tokens_panel(
    request: HttpRequest,
    form: ApiTokenForm | None = None,
    new_token: str = "",
    created: ApiToken | None = None,
) -> dict[str, Any]:
    sort = request.GET.get("sort", "-created")
    if sort not in TOKEN_SORTS:
        sort = "-created"
    rows = (
        ApiToken.objects.filter(org=org_of(request))
        .select_related("created_by", "revoked_by")
        .defer("token_hash")
        .order_by(*TOKEN_SORTS[sort])
    )
    page = Paginator(rows, TOKENS_PER_PAGE).get_page(request.GET.get("page"))
    return {
        "title": "API tokens",
        "form": form or ApiTokenForm(),
        "page": page,
        "sort": sort,
        "new_token": new_token,
        "created": created,
        "today": timezone.now().date(),
        "any_predate_scopes": rows.filter(predates_scopes=True, revoked_at__isnull=True).exists(),
    }


@org_view("integrations.manage")
def api_tokens(request: HttpRequest) -> HttpResponse:
    return render(request, "rensei/api_tokens.html", _tokens_panel(request))


@never_cache  # the response carries the token's only showing
@org_view("integrations.manage")
@require_POST
@sensitive_variables("plaintext", "context")
def api_token_create(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST)
    template = "rensei/api_tokens.html"
    if _is_htmx(request):
        template += "#tokens-panel"
    if not form.is_valid():
        status = 200 if _is_htmx(request) else 400
        return render(request, template, _tokens_panel(request, form=form), status=status)
    token, plaintext = tokens.create_token(
        org_of(request),
        form.cleaned_data["name"],
        request.user,
        Channel.WEB,
        scopes=form.cleaned_data["scopes"],
        expires_on=form.cleaned_data["expires_on"],
    )
    context = _tokens_panel(request, new_token=plaintext, created=token)
    return render(request, template, context)


@org_view("integrations.manage")
@require_http_methods(["GET", "POST"])
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the confirm page (for browsers without JS); POST: revoke."""
    token = get_for_org(request, ApiToken.objects.select_related("org"), pk=pk)
    if request.method == "POST":
        if tokens.revoke(token, request.user, Channel.WEB):
            messages.success(request, f"Token “{token.name}” ({token.prefix}…) revoked.")
        else:
            messages.info(request, f"Token “{token.name}” was already revoked.")
        return _back(request, reverse("api_tokens"))
    if token.is_revoked:
        messages.info(request, f"Token “{token.name}” is already revoked.")
        return redirect("api_tokens")
    return render(
        request,
        "rensei/confirm.html",
        {
            "title": "Revoke this API token?",
            "question": (
                f"Revoke “{token.name}” ({token.prefix}…)? Anything using it gets 401 "
                "from the next request on. This cannot be undone."
            ),
            "action": reverse("api_token_revoke", args=[token.pk]),
            "button": "Revoke token",
            "cancel": reverse("api_tokens"),
        },
    )
