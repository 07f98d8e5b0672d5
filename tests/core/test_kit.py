"""kit.read_field without a framework: a converter's guard loses one field, logs once
per framework, field and exception type (never the exception's message), and never raises.
The LlamaIndex converters' use of it is tested in tests/llamaindex/test_kit_read_field.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from gf_integrations import kit

FIELDS = (("fw", "a field", "RuntimeError"), ("fw", "a field", "ValueError"))


@pytest.fixture(autouse=True)
def _fresh_log_once() -> Iterator[None]:
    for key in FIELDS:
        kit.forget_logged(("read_field", *key))
    yield
    for key in FIELDS:
        kit.forget_logged(("read_field", *key))


def _raise(exc: Exception) -> object:
    raise exc


def test_a_surprising_field_gives_the_default_and_logs_once_per_exception_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        for _ in range(3):
            got = kit.read_field(
                lambda: _raise(RuntimeError("secret-in-message")),
                None,
                framework="fw",
                what="a field",
            )
            assert got is None
        assert (
            kit.read_field(
                lambda: _raise(ValueError("secret-in-message")),
                "dflt",
                framework="fw",
                what="a field",
            )
            == "dflt"
        )
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert all("a field" in m and "fw" in m for m in messages)
    assert any("RuntimeError" in m for m in messages)
    assert any("ValueError" in m for m in messages)
    assert not any("secret-in-message" in m for m in messages)


def test_read_field_returns_the_value_when_nothing_fails() -> None:
    assert kit.read_field(lambda: 3, 0, framework="x", what="y") == 3


def test_identity_keywords_are_validated_once_for_every_entry_point() -> None:
    from gf_integrations import GreenflashClient
    from gf_integrations.kit import identity_keywords

    defaults, client = identity_keywords(
        "wrap_x", {"external_user_id": "u1", "properties": {"plan": "pro"}}
    )
    assert (defaults.external_user_id, defaults.properties, client) == ("u1", {"plan": "pro"}, None)
    with pytest.raises(TypeError, match="unexpected keyword argument 'gf_client'"):
        identity_keywords("wrap_x", {"gf_client": None})
    with pytest.raises(TypeError, match=r"wrap_x\(client=...\) expects"):
        identity_keywords("wrap_x", {"client": object()})
    with pytest.raises(TypeError, match=r"external_user_id=...\) expects a str"):
        identity_keywords("wrap_x", {"external_user_id": 42})
    with pytest.raises(TypeError, match="properties"):
        identity_keywords("wrap_x", {"properties": ["not", "a", "mapping"]})
    gfc = GreenflashClient(enabled=False)
    try:
        assert identity_keywords("wrap_x", {"client": gfc})[1] is gfc
    finally:
        gfc.shutdown(timeout=1)
