"""``{% demo_notice %}``: two sentences on the dashboard saying what the demo is and where
its sandboxes run. Shown for the demo organisation, and on any org while the server's E2B
URL points at this machine (the local emulator), so nobody mistakes either for real E2B.
"""

from __future__ import annotations

from typing import Any

from django import template

from rensei.demo import is_demo_org, uses_local_emulator

register = template.Library()


@register.inclusion_tag("rensei/_demo_notice.html", takes_context=True)
def demo_notice(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    org = getattr(request, "org", None)
    membership = getattr(request, "membership", None)
    local = uses_local_emulator()
    demo = is_demo_org(org)
    return {
        "show": local or demo,
        "local": local,
        "demo": demo,
        "can_integrations": bool(membership and membership.can("integrations.manage")),
    }
