"""The capacity pages as an admin uses them: new pool (picker, form, raw JSON), the pool page,
and what is audited."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest

from pools.forms import E2BPoolForm
from pools.models import CapacityPool, HealthStatus, PoolHealthCheck
from tests.capacity.helpers import audits, sessions
from tests.capacity.pages import NEW, NEW_E2B, detail, element, table_rows, text

# The product doc's "Capability profile" table, value for value.
DOC_PROFILE = {
    "transportModel": "dial-in (E2B envd exposes an exec endpoint)",
    "supportsFsSnapshot": "true",
    "supportsPauseResume": "true (full memory + FS, ~1s pause/resume)",
    "supportsCapacityQuery": "false (FaaS-style, opaque capacity)",
    "maxConcurrent": "null (tier-gated by E2B)",
    "maxSessionDurationSeconds": "null (tier-dependent)",
    "os": "linux",
    "arch": "x86_64",
    "idleCostModel": "zero (paused sandboxes cost $0)",
    "billingModel": "wall-clock (while running)",
    "supportsGpu": "false",
    "supportsCustomNetworkPolicy": "false",
    "egressDefault": "allow-all",
}
DOC_DOCKERFILE = """FROM e2bdev/code-interpreter:latest

# Install donmai binary
ARG DONMAI_VERSION=v0.11.0
RUN curl -fsSL "https://github.com/renseiai/donmai/releases/download/${DONMAI_VERSION}/donmai_linux_amd64" \\
    -o /usr/local/bin/donmai && chmod +x /usr/local/bin/donmai

# Start command: launch the in-box runner
CMD ["donmai", "agent", "run"]"""  # noqa: E501
DOC_BUILD = """npm install -g @e2b/cli

e2b template build \\
  --name donmai-worker \\
  --dockerfile worker/e2b.Dockerfile \\
  --start-cmd "donmai agent run\""""
DOC_RUNTIME = "npm, python-pip, http, mcp-server, a2a-protocol"
DOC_REQUIREMENT = "long-running, network-egress, git, full-history-clone"


# -- new pool ----------------------------------------------------------------------------


def profile_of(page: bytes) -> dict[str, str]:
    rows = table_rows(element(page, "capability-profile"))
    out = {}
    for label_and_key, value, words in rows:
        key = label_and_key.split()[-1]
        out[key] = value
        assert words, key  # every value also in words
    return out


def substrate_of(page: bytes) -> tuple[str, str]:
    block = element(page, "substrate-defaults")
    runtime = re.search(r'data-kind="runtime">(.*?)</dd>', block, flags=re.S)
    requirement = re.search(r'data-kind="requirement">(.*?)</dd>', block, flags=re.S)
    assert runtime and requirement
    return text(runtime.group(1)), text(requirement.group(1))


@pytest.mark.parametrize("url", [NEW, NEW_E2B])
def test_profile_and_substrate_match_the_product_doc(client_as, alice, url):  # type: ignore[no-untyped-def]
    page = client_as(alice).get(url).content
    profile = profile_of(page)
    for key, value in DOC_PROFILE.items():
        assert profile[key] == value, key
    assert profile["supportsExecCommand"] == "true"
    assert substrate_of(page) == (DOC_RUNTIME, DOC_REQUIREMENT)


def test_picker_leads_to_the_e2b_form(client_as, alice, bob):  # type: ignore[no-untyped-def]
    page = client_as(alice).get(NEW).content.decode()
    assert f'href="{NEW_E2B}"' in page and "Create E2B pool" in page
    member = client_as(bob).get(NEW).content.decode()
    assert NEW_E2B not in member and "Only organisation admins can create pools." in member


def test_form_page_labels_example_and_base_warning(client_as, alice):  # type: ignore[no-untyped-def]
    page = client_as(alice).get(NEW_E2B)
    html = page.content.decode()
    assert page.status_code == 200
    for field in E2BPoolForm.field_order:
        assert f'for="id_{field}"' in html, field
        assert f'id="id_{field}"' in html, field
    example = json.loads(text(element(html, "example-config")))
    assert example == {"templateId": "abc123def456", "launchRunnerInline": False}
    keys = [row[0] for row in table_rows(element(html, "config-keys"))]
    assert keys[:2] == ["templateId", "launchRunnerInline"]
    assert "The base template has no donmai binary." in text(element(html, "base-warning"))
    blocks = [
        unescape(b)
        for b in re.findall(r"<pre[^>]*>(.*?)</pre>", element(html, "base-warning"), re.S)
    ]
    assert blocks == [DOC_DOCKERFILE, DOC_BUILD]


@pytest.mark.parametrize(
    ("query", "warned"),
    [
        ("templateId=base", True),
        ("templateId=", True),
        ("templateId=+base+", True),
        ("templateId=donmai-worker", False),
        ("templateId=base&snapshotId=snap-1", False),
    ],
)
def test_template_hint_follows_the_field(client_as, alice, query, warned):  # type: ignore[no-untyped-def]
    response = client_as(alice).htmx("get", f"{NEW}template-hint/?{query}")
    assert response.status_code == 200
    assert ("has no donmai binary" in text(response.content)) is warned
    assert 'id="template-hint"' in response.content.decode()


def test_create_pool(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    response = client_as(alice).post(
        NEW_E2B,
        {
            "name": "workers",
            "templateId": "donmai-worker",
            "timeoutSeconds": "7200",
            "onTimeout": "pause",
            "envVars": "REGION=eu\nMODE=fast",
            "runtime_provides_text": "toolchain:go, toolchain:node",
            "concurrency_cap": "10",
            "enabled": "on",
        },
    )
    pool = CapacityPool.objects.get()
    assert response.status_code == 302 and response["Location"] == detail(pool.pk)
    assert pool.org == org_a and pool.provider == "e2b"
    assert pool.config == {
        "templateId": "donmai-worker",
        "launchRunnerInline": False,
        "timeoutSeconds": 7200,
        "onTimeout": "pause",
        "envVars": {"REGION": "eu", "MODE": "fast"},
    }
    assert pool.runtime_provides == ["toolchain:go", "toolchain:node"]
    assert (pool.concurrency_cap, pool.enabled, pool.order) == (10, True, 0)
    event = audits("pool.created")[0]
    assert event.target == "workers" and event.detail["config"]["timeoutSeconds"] == 7200
    assert "eu" not in json.dumps(event.detail)  # env values stay out of the audit log


def test_new_pools_go_last(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    make_pool(org_a, "first", order=4)
    client_as(alice).post(NEW_E2B, {"name": "second"})
    assert CapacityPool.objects.get(name="second").order == 5


def test_create_with_htmx_redirects_the_browser(client_as, alice):  # type: ignore[no-untyped-def]
    response = client_as(alice).htmx("post", NEW_E2B, {"name": "h"})
    pool = CapacityPool.objects.get()
    assert response.status_code == 200 and response["HX-Redirect"] == detail(pool.pk)
    assert pool.config["templateId"] == "base"


def test_raw_json_is_the_whole_config(client_as, alice):  # type: ignore[no-untyped-def]
    # Typed fields left at what the form showed do not matter (a changed one must agree:
    # tests/capacity/test_pool_form_one_truth.py).
    raw = {"templateId": "abc123def456", "launchRunnerInline": True, "envVars": {"A": "1"}}
    client_as(alice).post(
        NEW_E2B,
        {
            "name": "raw",
            "templateId": "base",
            "timeoutSeconds": "3600",
            "raw_config": json.dumps(raw),
        },
    )
    assert CapacityPool.objects.get().config == {**raw, "timeoutSeconds": 3600, "onTimeout": "kill"}


def test_invalid_input_is_a_400_and_saves_nothing(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    make_pool(org_a, "taken")
    client = client_as(alice)
    response = client.post(
        NEW_E2B,
        {
            "name": "Taken",
            "templateId": "has space",
            "timeoutSeconds": "90000",
            "envVars": "1st=1",
            "runtime_provides_text": "gpu",
        },
    )
    assert response.status_code == 400
    body = text(response.content)
    assert "already has a pool named 'Taken'" in body
    assert "must be between 1 and 86400 seconds." in body  # the config model's words
    assert "Line 1: “1st” is not a valid variable name" in body
    assert "Unknown kind: gpu" in body
    assert CapacityPool.objects.count() == 1

    raw = client.post(NEW_E2B, {"name": "r", "raw_config": '{"timeoutSeconds": true, "x": 1}'})
    assert raw.status_code == 400
    body = text(raw.content)
    assert "timeoutSeconds: must be a whole number of seconds, not a boolean." in body
    assert 'x: "x" is not a known key' in body
    broken = client.htmx("post", NEW_E2B, {"name": "r", "raw_config": "{nope"})
    assert broken.status_code == 200 and "config: not valid JSON" in text(broken.content)
    assert CapacityPool.objects.count() == 1


# -- one pool ----------------------------------------------------------------------------


def test_pool_page(client_as, alice, bob, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(
        org_a,
        config={"templateId": "donmai-worker", "envVars": {"TOKEN": "hunter2"}},
        runtime_provides=["toolchain:go"],
    )
    sessions(pool, "running", "terminated")
    PoolHealthCheck.objects.create(
        pool=pool, status=HealthStatus.FAILING, output="donmai not found in template base"
    )
    admin_page = client_as(alice).get(detail(pool.pk)).content.decode()
    for page, editable in (
        (admin_page, True),
        (client_as(bob).get(detail(pool.pk)).content, False),
    ):
        body = text(page)
        config = json.loads(text(element(page, "pool-config")))
        assert config["templateId"] == "donmai-worker"
        assert config["envVars"] == {"TOKEN": "••••"}
        provides = text(element(page, "effective-provides")).split()
        assert "toolchain:go" in provides and "npm" in provides and "full-history-clone" in provides
        assert "donmai not found in template base" in body
        assert "running" in body and "terminated" in body  # recent sessions
        assert ("Edit pool" in body) is editable
        assert ("Check pool" in body) is editable
    assert "hunter2" not in text(client_as(bob).get(detail(pool.pk)).content)


def test_base_pool_page_warns(client_as, bob, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, config={"templateId": "base"})
    page = client_as(bob).get(detail(pool.pk)).content
    assert "The base template has no donmai binary." in text(element(page, "base-warning"))


def test_edit_pool_audits_before_and_after(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, config={"templateId": "base", "envVars": {"K": "old"}}, order=3)
    client = client_as(alice)
    form = client.get(detail(pool.pk)).content.decode()
    # Values are write-only: the form lists the name alone.
    assert 'value="base"' in form and "\nK</textarea>" in form and "K=old" not in form
    data = {
        "name": "main",
        "templateId": "donmai-worker",
        "timeoutSeconds": "3600",
        "onTimeout": "kill",
        "envVars": "K=new",
        "order": "",
        "enabled": "on",
    }
    response = client.post(detail(pool.pk), data)
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.config["templateId"] == "donmai-worker" and pool.order == 3
    event = audits("pool.changed")[0]
    assert event.detail["config"]["before"]["templateId"] == "base"
    assert event.detail["config"]["after"]["templateId"] == "donmai-worker"
    assert "old" not in json.dumps(event.detail) and "new" not in json.dumps(event.detail)
    client.post(detail(pool.pk), data)  # no change: no audit row
    assert len(audits("pool.changed")) == 1

    bad = client.htmx("post", detail(pool.pk), {**data, "timeoutSeconds": "0"})
    said = "must be between 1 and 86400 seconds."  # the config model's words
    assert bad.status_code == 200 and said in text(bad.content)
    pool.refresh_from_db()
    assert pool.config["timeoutSeconds"] == 3600
