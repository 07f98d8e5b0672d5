"""The built-in PII redactor and the ``mask=`` hook."""

from __future__ import annotations

import logging

import pytest

from gf_integrations import redact_pii
from gf_integrations.core.context import Conv
from gf_integrations.core.events import LLMCall, ToolResult
from gf_integrations.core.masking import redact_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+news@example.co.uk today", "write to [REDACTED_EMAIL] today"),
        ("a@b.io", "[REDACTED_EMAIL]"),
        ("call +1 415 555 2671 now", "call [REDACTED_PHONE] now"),
        ("call +44 20 7946 0958.", "call [REDACTED_PHONE]."),
        ("(415) 555-2671", "[REDACTED_PHONE]"),
        ("415-555-2671", "[REDACTED_PHONE]"),
        ("415.555.2671", "[REDACTED_PHONE]"),
        ("tel 030 1234 5678", "tel [REDACTED_PHONE]"),
        ("06 12 34 56 78", "[REDACTED_PHONE]"),
        ("visa 4111 1111 1111 1111.", "visa [REDACTED_CARD]."),
        ("4111-1111-1111-1111", "[REDACTED_CARD]"),
        ("mc 5500000000000004", "mc [REDACTED_CARD]"),
        ("amex 3782 822463 10005", "amex [REDACTED_CARD]"),
        ("key sk-proj-abc123DEF456ghi789jkl", "key [REDACTED_KEY]"),
        ("sk-ant-api03-AbC123dEf456GhI789", "[REDACTED_KEY]"),
        ("stripe sk_live_51HabcdEFGH1234567890", "stripe [REDACTED_KEY]"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED_KEY]"),
        ("xoxb-1234567890-abcdefghij", "[REDACTED_KEY]"),
        ("AKIAIOSFODNN7EXAMPLE", "[REDACTED_KEY]"),
        ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "[REDACTED_KEY]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_X",
            "jwt [REDACTED_KEY]",
        ),
        ("Authorization: Bearer abc.DEF-123_xyz", "Authorization: Bearer [REDACTED_TOKEN]"),
        ("bearer 0123456789abcdef", "Bearer [REDACTED_TOKEN]"),
    ],
)
def test_pii_shapes_are_redacted(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 12345678 shipped",
        "order #A-1234-5678-9012",
        "on 2024-01-15 at 10:30",
        "2024-01-15T10:30:00Z",
        "01/15/2024",
        "version 1.2.3.4 and 10.0.19045",
        "server 192.168.100.200",
        "amount 1234567.89 EUR",
        "timestamp 1700000000123",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "card-like but not Luhn 4111 1111 1111 1112",
        "skeleton_key_generator_v2",
        "pkg_resources_module_name",
        "sk-this-is-a-long-sentence-here",
        "ISBN 978-3-16-148410-0",
        "user@localhost",
        "the bearer of bad news",
        "",
    ],
)
def test_ordinary_text_and_numbers_survive(text):
    assert redact_text(text) == text


def test_redact_pii_walks_containers_and_leaves_other_types():
    value = {"a": ["mail x@y.com", 5, None], "b": {"c": "415-555-2671"}, "n": 1.5}
    assert redact_pii(value) == {
        "a": ["mail [REDACTED_EMAIL]", 5, None],
        "b": {"c": "[REDACTED_PHONE]"},
        "n": 1.5,
    }


def test_mask_pii_applies_to_everything_that_leaves_the_process(make_client, capture_server):
    client = make_client(mask="pii")
    conv = Conv("c", "u")
    client.record(
        LLMCall(
            conv,
            "r1",
            messages=[
                {"role": "system", "content": "Support agent. Escalate to boss@corp.com"},
                {"role": "user", "content": "my card is 4111 1111 1111 1111"},
            ],
            reply={"role": "assistant", "content": "Noted, I will call +1 415 555 2671"},
            properties={"contact": "x@y.com"},
        )
    )
    client.record(
        ToolResult(conv, "t", "lookup", "tc", input={"email": "x@y.com"}, output="ok a@b.io")
    )
    assert client.flush(5)
    raw = str(capture_server.requests)
    for secret in ("boss@corp.com", "4111 1111", "555 2671", "x@y.com", "a@b.io"):
        assert secret not in raw
    assert "[REDACTED_CARD]" in raw
    assert "[REDACTED_EMAIL]" in raw


def test_a_custom_mask_and_a_failing_mask(make_client, capture_server, caplog):
    calls = []

    def upper(value):
        calls.append(value)
        return value.upper() if isinstance(value, str) else value

    client = make_client(mask=upper)
    conv = Conv("c", "u")
    client.record(LLMCall(conv, "r", messages=[{"role": "user", "content": "hi"}], reply=None))
    assert client.flush(5)
    assert capture_server.messages[-1]["content"] == "HI"
    assert calls

    def broken(value):
        raise RuntimeError("mask bug with SECRET")

    caplog.set_level(logging.WARNING, logger="gf_integrations")
    client2 = make_client(mask=broken)
    client2.record(LLMCall(Conv("c2", "u"), "r", messages=[{"role": "user", "content": "SECRET"}]))
    assert client2.flush(5)
    assert capture_server.messages[-1]["content"] == "[masking failed]"
    assert "SECRET" not in caplog.text
