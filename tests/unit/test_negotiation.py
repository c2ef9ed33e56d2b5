"""Pure-function tests of Accept negotiation (spec core §3, §7.6, §10) — no server."""

from __future__ import annotations

import pytest

from smserve.negotiation import choose, effective_accept, first_concrete, parse_accept

SUPPORTED = ("application/json", "text/csv", "application/x-npy", "application/jsonlines")
DEFAULT = "application/json"


@pytest.mark.parametrize("header", [None, "", "   ", "*/*", "*/*;q=0.8", "*/*, */*;q=0.1", "*"])
def test_effective_accept_uses_default(header):
    """core §10 / items 78, 79: missing, empty, or only */* ranges with q > 0 → the default."""
    assert effective_accept(header, "text/csv") == "text/csv"


@pytest.mark.parametrize("header", ["text/csv", "*/*, text/csv", "application/*", "*/*;q=0"])
def test_effective_accept_keeps_header(header):
    """core §10: anything with a concrete or type/* range (or a q=0 wildcard) is negotiated as given."""
    assert effective_accept(header, "text/csv") == header


@pytest.mark.parametrize("header,expected", [
    ("text/csv, application/json", "text/csv"),                     # item 80: first listed wins
    ("application/json, text/csv", "application/json"),
    ("application/json;q=0.5, text/csv;q=0.9", "text/csv"),        # item 81: highest q
    ("image/png, application/x-npy", "application/x-npy"),         # item 82
    ("image/png,application/x-npy", "application/x-npy"),
    ("application/json;q=0.9", "application/json"),               # AWS 500s on this; we accept
    ("application/json; charset=utf-8", "application/json"),
    ("APPLICATION/JSON", "application/json"),
    ("text/*", "text/csv"),
    ("application/*", "application/json"),                         # preference order breaks the tie
    ("application/*;q=0.5, application/x-npy", "application/x-npy"),
    ("*/*", "application/json"),
    ("*/*;q=0.1, text/csv;q=0.05", "application/json"),
    ("application/json;q=0, */*", "text/csv"),                     # q=0 excludes json; */* gives the rest
    ("application/x-jsonlines", "application/jsonlines"),          # alias
    ("application/jsonlines, application/json", "application/jsonlines"),
    ("text/csv;q=0.5, application/json;q=0.5", "text/csv"),        # tie: first listed
    ("application/*;q=0.9, application/json;q=0.1", "application/x-npy"),  # most specific range decides json's q
    ("text/csv ; q=1.0 , application/json", "text/csv"),
])
def test_choose(header, expected):
    """core §10: q of the most specific matching range; highest q; ties → first listed; then preference."""
    assert choose(header, SUPPORTED) == expected


@pytest.mark.parametrize("header", ["image/png", "text/html, image/*", "application/json;q=0", "text/csv;q=0",
                                    "*/*;q=0", "application/xml"])
def test_choose_nothing_acceptable(header):
    """core §10 / item 83: nothing acceptable → None (the server answers 406)."""
    assert choose(header, SUPPORTED) is None


def test_parse_accept_q_and_params():
    """core §3: comma list, q-values, parameters, type/*, */*."""
    ranges = parse_accept("text/csv;q=0.5;charset=utf-8, application/*, */*;q=0.1")
    assert [(r.type, r.subtype, r.q) for r in ranges] == [("text", "csv", 0.5), ("application", "*", 1.0),
                                                         ("*", "*", 0.1)]


@pytest.mark.parametrize("header,expected", [
    ("text/plain", "text/plain"),
    ("*/*, text/plain", "text/plain"),
    ("application/*, image/png;q=0.5", "image/png"),
    ("text/csv;q=0.2, application/json;q=0.9", "application/json"),
    ("*/*", None),
    ("text/*", None),
    ("image/png;q=0, text/plain", "text/plain"),
])
def test_first_concrete(header, expected):
    """core §7.6 / item 54: a user's bare body gets the first concrete type of Accept in preference order."""
    assert first_concrete(header) == expected
