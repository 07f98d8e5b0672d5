"""kit.read_field: a converter's guard loses one field, logs once, never raises."""

from __future__ import annotations

import logging

import pytest

from gf_integrations import kit
from gf_integrations.llamaindex.convert import _documents, _to_neutral


class _Surprise:
    """A framework object whose attributes raise something other than AttributeError."""

    role = "assistant"
    content = "kept"

    @property
    def additional_kwargs(self) -> dict[str, object]:
        raise RuntimeError("secret-in-message")


class _Node:
    node_id = "n1"
    text = "kept text"

    def get_content(self) -> str:
        return self.text

    @property
    def metadata(self) -> dict[str, object]:
        raise ValueError("secret-in-message")


@pytest.fixture(autouse=True)
def _fresh_log_once() -> None:
    for what in ("a message's additional_kwargs", "a node's metadata"):
        for exc in ("RuntimeError", "ValueError"):
            kit.forget_logged(("read_field", "a LlamaIndex object", what, exc))


def test_a_surprising_field_is_left_out_and_the_rest_kept(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        for _ in range(3):
            assert _to_neutral(_Surprise()) == {"role": "assistant", "content": "kept"}
            docs = _documents([_Node()])
            assert docs[0]["id"] == "n1"
            assert docs[0]["text"] == "kept text"
            assert docs[0]["metadata"] is None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("additional_kwargs" in m for m in messages) == 1
    assert sum("metadata" in m for m in messages) == 1
    assert not any("secret-in-message" in m for m in messages)


def test_read_field_returns_the_value_when_nothing_fails() -> None:
    assert kit.read_field(lambda: 3, 0, framework="x", what="y") == 3
