"""Deterministic ids and sampling fractions."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from gf_integrations.core import ids
from gf_integrations.core.context import Conv
from gf_integrations.core.events import LLMCall


@pytest.mark.parametrize(
    "parts",
    [
        (),
        ("a",),
        ("conv\x1fc1", "msg", "native-id"),
        ("c", None, 3, 4.5),
        ("ünïcödé", "🙂"),
        ("x" * 10_000,),
    ],
)
def test_stable_id_is_exactly_uuid5(parts):
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    assert ids.stable_id(*parts) == str(uuid.uuid5(ids._NAMESPACE, joined))


def test_stable_id_separates_parts_and_survives_lone_surrogates():
    assert ids.stable_id("ab", "c") != ids.stable_id("a", "bc")
    value = ids.stable_id("x\udc80")
    assert uuid.UUID(value).version == 5


def test_sample_fraction_is_stable_and_in_range():
    values = [ids.sample_fraction(f"conv-{i}") for i in range(2_000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert values == [ids.sample_fraction(f"conv-{i}") for i in range(2_000)]
    assert 0.45 < sum(v < 0.5 for v in values) / len(values) < 0.55


def test_same_input_gives_the_same_wire_ids_in_two_clients(make_client, capture_server):
    def turn() -> LLMCall:
        return LLMCall(
            Conv("same", "u"),
            "run-1",
            messages=[{"role": "user", "content": "hi"}],
            reply={"role": "assistant", "content": "hello"},
        )

    for _ in range(2):
        client = make_client()
        client.record(turn())
        assert client.flush(5)
    first, second = capture_server.requests
    assert [m["externalMessageId"] for m in first["messages"]] == [
        m["externalMessageId"] for m in second["messages"]
    ]
    for m in first["messages"]:
        assert m["createdAt"].endswith("Z")
        stamp = dt.datetime.fromisoformat(m["createdAt"].replace("Z", "+00:00"))
        assert stamp.utcoffset() == dt.timedelta(0)
