"""A table's row links from one ``reverse``: the same URLs as a ``reverse`` per row."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from rensei.links import url_for_each
from sessions.view_helpers import detail_urls

# Issue keys come from the dispatcher: anything up to 64 characters.
KEYS = [
    "ENG-1",
    "ENG-10",
    "a b",
    "ü-ñ",
    "a/b",
    "/lead",
    "100%",
    "&'\"<>",
    "?x=1#y",
    "~:@!$*+,;=",
    "0",
    "987",
]


@pytest.mark.parametrize("key", KEYS)
def test_issue_links_match_reverse(key: str) -> None:
    assert url_for_each("issue_cost", "sample-key")(key) == reverse("issue_cost", args=[key])


@pytest.mark.parametrize("pk", [0, 1, 9, 10, 987654321, 2**62])
def test_session_links_match_reverse(pk: int) -> None:
    assert detail_urls()(pk) == reverse("session_detail", args=[pk])


def test_links_under_a_script_prefix() -> None:
    with override_settings(FORCE_SCRIPT_NAME="/rensei 1/"):
        from django.urls import set_script_prefix

        set_script_prefix("/rensei 1/")
        try:
            url = url_for_each("issue_cost", "sample-key")
            assert url("a b") == reverse("issue_cost", args=["a b"])
            assert url("a b").startswith("/rensei%201/")
        finally:
            set_script_prefix("/")


def test_a_sample_the_url_does_not_show_is_refused() -> None:
    with pytest.raises(ValueError, match="does not show its argument"):
        url_for_each("issue_cost", "a b")  # shown quoted: a%20b
