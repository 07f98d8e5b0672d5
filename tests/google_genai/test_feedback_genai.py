"""gf.rate on what a wrapped google-genai client returned (the response object, its id),
through the real local collector."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("google.genai", reason="the google extra is not installed")

pytest.importorskip("starlette")

from google.genai import types

import gf_integrations as gf
from gf_integrations.google_genai import wrap_genai
from helpers.fake_gemini import FakeGemini
from helpers.feedback import PRODUCT, default_client, rated

needs_response_id = pytest.mark.skipif(
    "response_id" not in types.GenerateContentResponse.model_fields,
    reason="GenerateContentResponse.response_id arrived in a later google-genai",
)


@pytest.fixture
def client(collector: Any) -> Iterator[gf.GreenflashClient]:
    with default_client(collector) as c:
        yield c


@needs_response_id
def test_response_objects_and_ids_rate_their_answers(client, collector):
    fake = FakeGemini()
    with fake.serve() as base:
        gem = wrap_genai(fake.client(base), external_user_id="u2")
        with gf.conversation("gem-plain"):
            r = gem.models.generate_content(model="gemini-2.5-flash", contents="Capital of Italy?")
        with gf.conversation("gem-stream"):
            chunks = list(
                gem.models.generate_content_stream(model="gemini-2.5-flash", contents="Spain?")
            )
    if r.response_id is None:
        pytest.skip("this google-genai does not read responseId from the API's answer")
    assert gf.rate(r, 5, rating_min=1, rating_max=5)
    assert gf.rate(chunks[0].response_id, 2, rating_min=1, rating_max=5, feedback="meh")
    assert client.flush(10)
    assert rated(collector, "gem-plain") == [("Answer 1", 5.0, None)]
    assert rated(collector, "gem-stream") == [("Answer 1", 2.0, "meh")]
    assert [m["messageType"] for m in collector.messages("gem-plain", PRODUCT)] == [
        "user_message",
        "assistant_message",
    ]
