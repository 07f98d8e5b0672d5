"""One usage vocabulary: each provider's own usage shape, as its API or SDK sends it, gives the
same counts for the same call (core/usage.py); and the recorder puts them in
``properties.usage`` beside the provider's own object (``properties.providerUsage``).

"The same call" throughout: 11 input tokens, of which 4 read from the prompt cache and 3
written to it; 7 output tokens, of which 2 spent on reasoning.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import pydantic
import pytest

from gf_integrations.core.context import Conv
from gf_integrations.core.events import Embedding, LLMCall
from gf_integrations.core.recorder import Mapper
from gf_integrations.core.safejson import Limits
from gf_integrations.core.settings import ConfigurationError, build_settings
from gf_integrations.core.usage import KINDS, normalize

SAME_CALL = {
    "inputTokens": 11,
    "outputTokens": 7,
    "totalTokens": 18,
    "cacheReadTokens": 4,
    "cacheWriteTokens": 3,
    "reasoningTokens": 2,
}

# each provider's real shape for that call (field names from their API references and SDKs)
OPENAI_CHAT = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 3, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 2,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
OPENAI_RESPONSES = {
    "input_tokens": 11,
    "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 3},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 18,
}
# Anthropic: input_tokens leaves out what was read from and written to the cache
ANTHROPIC = {
    "input_tokens": 4,
    "cache_read_input_tokens": 4,
    "cache_creation_input_tokens": 3,
    "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 7,
    "output_tokens_details": {"thinking_tokens": 2},
    "service_tier": "standard",
}
LANGCHAIN = {
    "input_tokens": 11,
    "output_tokens": 7,
    "total_tokens": 18,
    "input_token_details": {"audio": 0, "cache_read": 4, "cache_creation": 3},
    "output_token_details": {"audio": 0, "reasoning": 2},
}
# langchain-anthropic: cache writes under their TTL keys, the generic key zeroed
LANGCHAIN_ANTHROPIC = {
    "input_tokens": 11,
    "output_tokens": 7,
    "total_tokens": 18,
    "input_token_details": {
        "cache_read": 4,
        "cache_creation": 0,
        "ephemeral_5m_input_tokens": 3,
        "ephemeral_1h_input_tokens": 0,
    },
    "output_token_details": {"reasoning": 2},
}
# Bedrock Converse: inputTokens leaves out the cache too
BEDROCK = {
    "inputTokens": 4,
    "outputTokens": 7,
    "totalTokens": 11,
    "cacheReadInputTokens": 4,
    "cacheWriteInputTokens": 3,
}
BEDROCK_NOVA = {
    "inputTokens": 4,
    "outputTokens": 7,
    "totalTokens": 11,
    "cacheReadInputTokenCount": 4,
    "cacheWriteInputTokenCount": 3,
}
OTEL = {
    "gen_ai.usage.input_tokens": 11,
    "gen_ai.usage.output_tokens": 7,
    "gen_ai.usage.cache_read.input_tokens": 4,
    "gen_ai.usage.cache_creation.input_tokens": 3,
    "gen_ai.usage.reasoning.output_tokens": 2,
}
OPENINFERENCE = {
    "llm.token_count.prompt": 11,
    "llm.token_count.completion": 7,
    "llm.token_count.total": 18,
    "llm.token_count.prompt_details.cache_read": 4,
    "llm.token_count.prompt_details.cache_write": 3,
    "llm.token_count.completion_details.reasoning": 2,
}


@pytest.mark.parametrize(
    ("kind", "usage"),
    [
        ("openai_chat", OPENAI_CHAT),
        ("openai_responses", OPENAI_RESPONSES),
        ("anthropic", ANTHROPIC),
        ("langchain", LANGCHAIN),
        ("langchain", LANGCHAIN_ANTHROPIC),
        ("otel", OTEL),
        ("otel", OPENINFERENCE),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_shape_gives_the_same_counts_for_the_same_call(kind: str, usage: Any) -> None:
    assert normalize(kind, usage) == SAME_CALL
    # and the shape is recognised by its keys when the kind is not named
    assert normalize(None, usage) == SAME_CALL
    assert normalize("llamaindex", usage) == SAME_CALL


@pytest.mark.parametrize(("kind", "usage"), [("bedrock", BEDROCK), ("bedrock_nova", BEDROCK_NOVA)])
def test_bedrock_adds_the_cache_to_its_input_and_reports_no_reasoning(
    kind: str, usage: Any
) -> None:
    expected = {k: v for k, v in SAME_CALL.items() if k != "reasoningTokens"}
    assert normalize(kind, usage) == expected
    assert normalize(None, usage) == expected


def test_gemini_adds_thoughts_to_output_and_tool_prompts_to_input() -> None:
    # promptTokenCount holds the cached content; candidatesTokenCount leaves thoughts out
    camel = {
        "promptTokenCount": 9,
        "toolUsePromptTokenCount": 2,
        "cachedContentTokenCount": 4,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 2,
        "totalTokenCount": 18,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
    }
    expected = {k: v for k, v in SAME_CALL.items() if k != "cacheWriteTokens"}
    assert normalize("gemini", camel) == expected
    # the google-genai SDK's model_dump names
    snake = {
        "prompt_token_count": 9,
        "tool_use_prompt_token_count": 2,
        "cached_content_token_count": 4,
        "candidates_token_count": 5,
        "thoughts_token_count": 2,
        "total_token_count": 18,
    }
    assert normalize("gemini", snake) == expected
    assert normalize(None, snake) == expected
    # a thinking-only answer (no candidates count): output is the thoughts
    assert normalize("gemini", {"promptTokenCount": 3, "thoughtsTokenCount": 2}) == {
        "inputTokens": 3,
        "outputTokens": 2,
        "totalTokens": 5,
        "reasoningTokens": 2,
    }


def test_bedrock_llama_body_counts() -> None:
    body = {"generation": "hi", "prompt_token_count": 11, "generation_token_count": 7}
    expected = {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}
    assert normalize("bedrock_llama", body) == expected
    assert normalize(None, body) == expected


def test_only_the_counts_reported_are_written() -> None:
    # an embeddings call: no output count, the provider's total kept
    assert normalize("openai_embeddings", {"prompt_tokens": 8, "total_tokens": 8}) == {
        "inputTokens": 8,
        "totalTokens": 8,
    }
    # a plain chat usage without details: no cache, no reasoning keys
    assert normalize("openai_chat", {"prompt_tokens": 3, "completion_tokens": 2}) == {
        "inputTokens": 3,
        "outputTokens": 2,
        "totalTokens": 5,
    }
    # zero is a reported count, kept
    assert (
        normalize(
            "anthropic", {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 0}
        )["cacheReadTokens"]
        == 0
    )


def test_total_is_input_plus_output_not_the_providers_sum() -> None:
    # a provider total that disagrees (Bedrock's leaves the cache out) is not trusted
    assert normalize("bedrock", BEDROCK)["totalTokens"] == 18
    assert normalize("openai_chat", {**OPENAI_CHAT, "total_tokens": 999})["totalTokens"] == 18


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "11", "completion_tokens": 7},
        {"prompt_tokens": -1, "completion_tokens": 7},
        {"prompt_tokens": True, "completion_tokens": 7},
        {"prompt_tokens": float("nan"), "completion_tokens": 7},
        {"prompt_tokens": None, "completion_tokens": 7, "prompt_tokens_details": "odd"},
    ],
)
def test_a_malformed_count_is_left_out_and_the_rest_kept(usage: Any) -> None:
    assert normalize("openai_chat", usage) == {"outputTokens": 7}


def test_malformed_or_unknown_usage_never_raises_and_counts_nothing_twice() -> None:
    assert normalize("openai_chat", {"prompt_tokens_details": [1, 2]}) == {}
    assert normalize("no-such-kind", {"weird": 1}) == {}
    assert normalize(None, {}) == {}
    # an unknown kind is read by its keys, never guessed from a name
    assert normalize("mystery", {"prompt_tokens": 2, "completion_tokens": 1})["totalTokens"] == 3
    # Anthropic without a base input count: the cache is reported, no input is made up
    assert normalize("anthropic", {"cache_read_input_tokens": 4, "output_tokens": 7}) == {
        "outputTokens": 7,
        "cacheReadTokens": 4,
    }
    # integral floats (some JSON decoders) are counts
    assert normalize("bedrock", {"inputTokens": 2.0, "outputTokens": 1})["inputTokens"] == 2
    # already in this vocabulary (the demo, a host's own events): kept as it is
    assert normalize(None, SAME_CALL) == SAME_CALL
    assert normalize("greenflash", SAME_CALL) == SAME_CALL


def test_every_kind_is_named() -> None:
    assert set(KINDS) >= {
        "openai_chat",
        "openai_responses",
        "anthropic",
        "langchain",
        "llamaindex",
        "otel",
        "gemini",
        "bedrock",
        "bedrock_nova",
        "bedrock_llama",
    }


# -- the recorder: properties.usage and properties.providerUsage ------------------------

CONV = Conv("c1", "u1")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


class _Details(pydantic.BaseModel):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class _OutDetails(pydantic.BaseModel):
    reasoning_tokens: int | None = None


class _Usage(pydantic.BaseModel):
    """An SDK usage model (pydantic, like the OpenAI SDK's CompletionUsage)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: _Details | None = None
    completion_tokens_details: _OutDetails | None = None


def _reply_props(m: Mapper, key: str = "r1", **kw: Any) -> dict[str, Any]:
    out = m.map(
        LLMCall(
            CONV,
            kw.pop("key", "r1"),
            reply={"role": "assistant", "content": f"hi {key}"},
            started_at=T0,
            ended_at=T0,
            **kw,
        )
    )
    props: dict[str, Any] = out[-1].message["properties"]
    return props


def test_recorder_writes_the_vocabulary_and_keeps_the_provider_object() -> None:
    raw = _Usage.model_validate(OPENAI_CHAT)
    props = _reply_props(Mapper(limits=Limits()), usage=raw, usage_kind="openai_chat")
    assert props["usage"] == SAME_CALL
    # exclude_none: the provider's object as the SDK dumps it
    assert props["providerUsage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    # lazily: a callable is read on the worker
    props = _reply_props(Mapper(limits=Limits()), usage=lambda: ANTHROPIC, usage_kind="anthropic")
    assert props["usage"] == SAME_CALL
    assert props["providerUsage"] == ANTHROPIC


def test_keep_provider_usage_false_drops_the_provider_object() -> None:
    m = Mapper(limits=Limits(), keep_provider_usage=False)
    props = _reply_props(m, usage=ANTHROPIC, usage_kind="anthropic")
    assert props["usage"] == SAME_CALL
    assert "providerUsage" not in props


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("keep_provider_usage", "GREENFLASH_KEEP_PROVIDER_USAGE"),
        ("estimate_cost", "GREENFLASH_ESTIMATE_COST"),
    ],
)
def test_usage_switches_from_arguments_and_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, env: str
) -> None:
    assert getattr(build_settings(), name) is True
    assert getattr(build_settings(**{name: False}), name) is False
    monkeypatch.setenv(env, "false")
    assert getattr(build_settings(), name) is False
    monkeypatch.setenv(env, "maybe")
    with pytest.raises(ConfigurationError, match=env):
        build_settings()
    monkeypatch.delenv(env)
    with pytest.raises(ConfigurationError, match=name):
        build_settings(**{name: "yes"})


def test_without_the_prices_extra_an_answer_keeps_its_usage_and_has_no_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # genai-prices not installed (None in sys.modules: its import raises ImportError), as in
    # the core matrix cell; the locked suite has it installed
    monkeypatch.setitem(sys.modules, "genai_prices", None)
    m = Mapper(limits=Limits())
    m.pricing.preload()  # what the client does: no error
    for key in ("r1", "r2"):
        props = _reply_props(
            m,
            key=key,
            model="gpt-4o",
            provider="openai",
            usage=OPENAI_CHAT,
            usage_kind="openai_chat",
        )
        assert props["usage"] == SAME_CALL
        assert "costUsd" not in props
        assert "pricing" not in props
    assert m.pricing.unknown_model == 0  # not unknown: not priced at all
    assert m.pricing.enabled is False  # the import is not tried again


def test_estimate_cost_off_prices_nothing() -> None:
    m = Mapper(limits=Limits(), estimate_cost=False)
    props = _reply_props(
        m, model="gpt-4o", provider="openai", usage=OPENAI_CHAT, usage_kind="openai_chat"
    )
    assert props["usage"] == SAME_CALL
    assert "costUsd" not in props


def test_a_usage_that_fails_to_read_loses_the_usage_not_the_reply() -> None:
    class Broken:
        def model_dump(self, **kw: Any) -> Any:
            raise RuntimeError("surprise")

    props = _reply_props(Mapper(limits=Limits()), usage=Broken(), usage_kind="openai_chat")
    assert "usage" not in props
    assert "providerUsage" not in props

    def failing() -> Any:
        raise ValueError("lazy read failed")

    props = _reply_props(Mapper(limits=Limits()), key="r2", usage=failing, usage_kind="anthropic")
    assert "usage" not in props
    # unreadable counts: the provider's object kept, no usage made up
    props = _reply_props(Mapper(limits=Limits()), key="r3", usage={"odd": "x"}, usage_kind="otel")
    assert "usage" not in props
    assert props["providerUsage"] == {"odd": "x"}


def test_a_stream_without_usage_is_marked_usage_missing() -> None:
    m = Mapper(limits=Limits())
    props = _reply_props(m, properties={"stream": True})
    assert props["usageMissing"] is True
    props = _reply_props(
        m, key="r2", properties={"stream": True}, usage=OPENAI_CHAT, usage_kind="openai_chat"
    )
    assert "usageMissing" not in props
    # a call that is not a stream: no usage is not a missing usage
    assert "usageMissing" not in _reply_props(m, key="r3")


def test_embeddings_usage_in_the_vocabulary() -> None:
    out = Mapper(limits=Limits()).map(
        Embedding(
            CONV,
            "e1",
            model="emb",
            count=2,
            usage={"prompt_tokens": 8, "total_tokens": 8},
            usage_kind="openai_embeddings",
        )
    )
    props = out[0].message["properties"]
    assert props["usage"] == {"inputTokens": 8, "totalTokens": 8}
    assert props["providerUsage"] == {"prompt_tokens": 8, "total_tokens": 8}
