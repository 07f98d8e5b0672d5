"""gf.rate on what a wrapped OpenAI client returned (response objects, ids, stream chunk ids),
through the real local collector."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

from test_openai import needs_responses

import gf_integrations as gf
from helpers.feedback import PRODUCT, default_client, rated


@pytest.fixture
def client(collector: Any) -> Iterator[gf.GreenflashClient]:
    with default_client(collector) as c:
        yield c


@needs_responses
def test_openai_response_objects_and_ids_rate_their_answers(client, collector):
    from test_openai import MockAPI, make_openai

    from gf_integrations.openai import wrap_openai

    oai = wrap_openai(make_openai(MockAPI()), external_user_id="u2")
    question = [{"role": "user", "content": "Capital of Italy?"}]
    with gf.conversation("oai-chat"):
        chat = oai.chat.completions.create(model="gpt-4o-mini", messages=question)
    with gf.conversation("oai-responses"):
        resp = oai.responses.create(model="gpt-4o-mini", input="Capital of Spain?")
    with gf.conversation("oai-stream"):
        stream = oai.chat.completions.create(model="gpt-4o-mini", messages=question, stream=True)
        (chunk_id,) = {chunk.id for chunk in stream}
    assert gf.rate(chat, 5, rating_min=1, rating_max=5)  # the response object
    assert gf.rate(resp.id, 4, rating_min=1, rating_max=5, feedback="good")  # its id
    assert gf.rate(chunk_id, 1, rating_min=1, rating_max=5, feedback="wrong city")
    assert client.flush(10)
    assert rated(collector, "oai-chat") == [(chat.choices[0].message.content, 5.0, None)]
    assert rated(collector, "oai-responses") == [(resp.output_text, 4.0, "good")]
    ((content, score, feedback),) = rated(collector, "oai-stream")
    assert (score, feedback) == (1.0, "wrong city")
    assert [m["messageType"] for m in collector.messages("oai-stream", PRODUCT)] == [
        "user_message",
        "assistant_message",
    ]
    assert content == collector.messages("oai-stream", PRODUCT)[1]["content"]
