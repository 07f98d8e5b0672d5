"""Safe JSON: any Python object becomes JSON, truncation is visible, limits are configurable."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from typing import Any
from unittest import mock

import pydantic
import pytest

from gf_integrations.core.context import Conv
from gf_integrations.core.events import LLMCall, ToolResult
from gf_integrations.core.safejson import (
    Limits,
    as_object,
    to_jsonable,
    tool_arguments,
    truncate_text,
)


def roundtrip(value: Any, limits: Limits | None = None) -> Any:
    out = to_jsonable(value, limits) if limits else to_jsonable(value)
    # it must be strict JSON: no NaN/inf, no unknown types
    return json.loads(json.dumps(out, allow_nan=False))


class Color(enum.Enum):
    RED = "red"


class Model(pydantic.BaseModel):
    name: str
    when: dt.datetime
    tags: set[str]


@dataclasses.dataclass
class Point:
    x: int
    y: decimal.Decimal


class Plain:
    def __init__(self) -> None:
        self.public = 1
        self._private = "hidden"


def test_common_types():
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = {
        "uuid": uid,
        "decimal": decimal.Decimal("1.10"),
        "datetime": when,
        "date": dt.date(2025, 1, 2),
        "time": dt.time(3, 4),
        "delta": dt.timedelta(seconds=1.5),
        "bytes": b"hello",
        "binary": b"\xff\x00",
        "big_bytes": b"x" * 1000,
        "set": {3, 1, 2},
        "frozenset": frozenset({"b", "a"}),
        "tuple": (1, "a"),
        "enum": Color.RED,
        "bigint": 2**70,
        "model": Model(name="m", when=when, tags={"t"}),
        "dataclass": Point(1, decimal.Decimal("2.5")),
        "object": Plain(),
        "exception": ValueError("bad value"),
        7: "int key",
    }
    out = roundtrip(value)
    assert out["uuid"] == str(uid)
    assert out["decimal"] == "1.10"  # exact, not a rounded float
    assert out["datetime"] == "2025-01-02T03:04:05+00:00"
    assert out["date"] == "2025-01-02"
    assert out["time"] == "03:04:00"
    assert out["delta"] == 1.5
    assert out["bytes"] == "hello"
    assert out["binary"] == "base64:/wA="
    assert out["big_bytes"] == "<1000 bytes>"
    assert out["set"] == [1, 2, 3]
    assert out["frozenset"] == ["a", "b"]
    assert out["tuple"] == [1, "a"]
    assert out["enum"] == "red"
    assert out["bigint"] == str(2**70)
    assert out["model"] == {"name": "m", "when": "2025-01-02T03:04:05+00:00", "tags": ["t"]}
    assert out["dataclass"] == {"x": 1, "y": "2.5"}
    assert out["object"] == {"__type__": "Plain", "public": 1}
    assert out["exception"] == {"type": "ValueError", "message": "bad value"}
    assert out["7"] == "int key"


def test_nan_and_inf_never_reach_json():
    out = roundtrip({"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 1.5})
    assert out == {"nan": "nan", "inf": "inf", "ninf": "-inf", "ok": 1.5}


def test_cycles_become_a_marker():
    a: dict[str, Any] = {"name": "a"}
    a["self"] = a
    lst: list[Any] = [1]
    lst.append(lst)
    out = roundtrip({"a": a, "list": lst})
    assert out["a"] == {"name": "a", "self": "<cycle>"}
    assert out["list"] == [1, "<cycle>"]
    # the same object twice (not a cycle) is kept twice
    shared = {"v": 1}
    assert roundtrip([shared, shared]) == [{"v": 1}, {"v": 1}]


def test_object_cycles_through_attributes():
    class Node:
        def __init__(self) -> None:
            self.next: Any = None

    n = Node()
    n.next = n
    assert roundtrip(n) == {"__type__": "Node", "next": "<cycle>"}


def test_deep_nesting_is_cut_with_a_placeholder():
    deep: Any = "bottom"
    for _ in range(500):
        deep = [deep]
    out = roundtrip(deep, Limits(max_depth=5))
    for _ in range(5):
        out = out[0]
    assert out == "<list: max depth>"
    assert roundtrip(deep) is not None  # default limits: no RecursionError either


def test_truncation_is_visible_and_configurable():
    limits = Limits(max_string=20, max_items=3)
    out = roundtrip(
        {"text": "x" * 100, "items": list(range(10)), "map": {str(i): i for i in range(5)}}, limits
    )
    assert out["text"] == "x" * 20 + "…[truncated 80 chars]"
    assert out["items"] == [0, 1, 2, "…[truncated 7 items]"]
    assert out["map"] == {"0": 0, "1": 1, "2": 2, "…": "[truncated 2 items]"}
    assert truncate_text("short", 10) == "short"


def test_hostile_objects_never_raise():
    class BadRepr:
        __slots__ = ()

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    class BadDump:
        def model_dump(self, **_: Any) -> Any:
            raise RuntimeError("no dump")

        def __init__(self) -> None:
            self.field = "kept"

    assert roundtrip(BadRepr()) == "<BadRepr>"
    assert roundtrip(BadDump()) == {"__type__": "BadDump", "field": "kept"}
    # a mock answers every attribute with another mock: must still terminate
    assert isinstance(roundtrip(mock.MagicMock()), (str, dict, list))


def test_as_object_wraps_non_objects():
    assert as_object("text", "result") == {"result": "text"}
    assert as_object([1, 2], "items") == {"items": [1, 2]}
    assert as_object({"a": 1}, "x") == {"a": 1}


def test_tool_arguments_parse_json_strings_once_for_every_integration():
    assert tool_arguments('{"city": "Paris", "days": 2}') == {"city": "Paris", "days": 2}
    assert tool_arguments({"city": "Paris"}) == {"city": "Paris"}
    assert tool_arguments(b'{"city": "Paris"}') == {"city": "Paris"}
    # no arguments at all
    assert [tool_arguments(v) for v in ("", "  ", None)] == [{}, {}, {}]
    # valid JSON that is not an object: parsed, wrapped under the key
    assert tool_arguments("[1, 2]") == {"arguments": [1, 2]}
    assert tool_arguments('"Paris"') == {"arguments": "Paris"}
    assert tool_arguments("NaN") == {"arguments": "nan"}  # still strict JSON on the wire
    # not JSON (a stream cut short): kept verbatim, with a visible marker
    assert tool_arguments('{"tz": "CET"') == {"arguments": '{"tz": "CET"', "invalidJson": True}
    # a tool invoked directly with plain text: wrapped, no marker (it was never JSON)
    assert tool_arguments("Paris", key="input", mark_invalid=False) == {"input": "Paris"}
    assert tool_arguments('{"q": 1}', key="input", mark_invalid=False) == {"q": 1}
    # limits still apply, to the parsed values and to the raw text
    small = Limits(max_string=20)
    assert tool_arguments('{"q": "' + "x" * 50 + '"}', small) == {
        "q": "x" * 20 + "…[truncated 30 chars]"
    }
    assert tool_arguments("y" * 50, small)["arguments"] == "y" * 20 + "…[truncated 30 chars]"
    # absurd nesting: a RecursionError inside json is caught, the text kept
    deep = "[" * 100_000
    assert tool_arguments(deep)["invalidJson"] is True


def test_tool_call_arguments_reach_the_wire_parsed(make_client, capture_server):
    """The recorder applies tool_arguments: integrations hand it the raw string."""
    client = make_client()
    conv = Conv("c-args", "u")
    client.record(
        LLMCall(
            conv,
            "r1",
            messages=[{"role": "user", "content": "weather?"}],
            reply={
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "a", "name": "weather", "arguments": '{"city": "Paris"}'},
                    {"id": "b", "name": "time", "arguments": '{"tz": "CET"'},
                    {"id": "c", "name": "ping", "arguments": ""},
                ],
            },
        )
    )
    client.record(ToolResult(conv, "t", "lookup", None, input='{"q": "x"}', output="ok"))
    client.record(ToolResult(conv, "t2", "echo", None, input="plain text", output="ok"))
    assert client.flush(5)
    msgs = capture_server.messages
    calls = {m["toolName"]: m["input"] for m in msgs if m.get("messageType") == "tool_call"}
    assert calls == {
        "weather": {"city": "Paris"},
        "time": {"arguments": '{"tz": "CET"', "invalidJson": True},
        "ping": {},
        "lookup": {"q": "x"},
        "echo": {"input": "plain text"},
    }


def test_limits_validate():
    with pytest.raises(ValueError):
        Limits(max_string=1)
    with pytest.raises(ValueError):
        Limits(max_depth=10_000)


def test_limits_apply_per_field_on_the_wire(make_client, capture_server):
    client = make_client(limits={"max_string": 50, "max_items": 4})
    conv = Conv("c", "u")
    client.record(
        LLMCall(
            conv,
            "r1",
            messages=[{"role": "user", "content": "Q" * 500}],
            reply={"role": "assistant", "content": "A" * 30},
        )
    )
    client.record(
        ToolResult(
            conv,
            "t",
            "search",
            "tc1",
            input={"query": "q" * 200, "ids": list(range(50))},
            output={"nan": math.nan, "when": dt.date(2025, 1, 1), "raw": b"\x00\xff"},
        )
    )
    assert client.flush(5)
    by_kind = {m.get("messageType") or m["role"]: m for m in capture_server.messages}
    assert by_kind["user"]["content"] == "Q" * 50 + "…[truncated 450 chars]"
    assert by_kind["assistant"]["content"] == "A" * 30  # under the limit: untouched
    tool_input = by_kind["tool_call"]["input"]
    assert tool_input["query"] == "q" * 50 + "…[truncated 150 chars]"
    assert tool_input["ids"] == [0, 1, 2, 3, "…[truncated 46 items]"]
    assert by_kind["observation"]["output"]["result"] == {
        "nan": "nan",
        "when": "2025-01-01",
        "raw": "base64:AP8=",
    }
