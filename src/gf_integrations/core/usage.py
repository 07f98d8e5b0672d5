"""Token usage in one vocabulary, whatever the provider's shape.

Every integration hands the provider's own usage (an SDK model, or a dict) to the recorder
with :attr:`~.events.LLMCall.usage_kind` naming its shape; :func:`normalize` turns it into::

    {"inputTokens": int,       # every input token: cache reads and writes included
     "outputTokens": int,      # every output token: reasoning included
     "totalTokens": int,       # inputTokens + outputTokens
     "cacheReadTokens": int,   # of inputTokens, read from the provider's prompt cache
     "cacheWriteTokens": int,  # of inputTokens, written to it
     "reasoningTokens": int}   # of outputTokens, spent on reasoning/thinking

with only the keys the provider reported (the OpenTelemetry GenAI convention for
``gen_ai.usage.input_tokens``). Providers disagree on what their input count holds:
Anthropic's ``input_tokens`` and Bedrock's ``inputTokens`` leave cache reads and writes
out (they are added here), OpenAI's ``prompt_tokens`` and Gemini's ``promptTokenCount``
hold them (nothing is added); Gemini's ``candidatesTokenCount`` leaves thinking out (it is
added). Runs on the worker, never on the caller's thread; it never raises: a value that
is not a count is left out, an unknown shape is recognised by its keys when it can be
and otherwise gives no usage (the provider's object is still kept).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["KINDS", "as_dict", "normalize"]

INPUT = "inputTokens"
OUTPUT = "outputTokens"
TOTAL = "totalTokens"
CACHE_READ = "cacheReadTokens"
CACHE_WRITE = "cacheWriteTokens"
REASONING = "reasoningTokens"
#: the vocabulary, in the order it is written
KEYS = (INPUT, OUTPUT, TOTAL, CACHE_READ, CACHE_WRITE, REASONING)


def as_dict(value: Any) -> dict[str, Any] | None:
    """A usage object as a plain dict: a mapping, a pydantic model, or None."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        data = dump(exclude_none=True)
        return data if isinstance(data, dict) else None
    data = getattr(value, "__dict__", None)
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if not k.startswith("_")}
    return None


def _get(obj: Any, *names: str) -> Any:
    """The first of ``names`` that ``obj`` (a mapping or an object) holds."""
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _count(value: Any) -> int | None:
    """A token count, or None for what is not one (bools, negatives, text, NaN)."""
    if type(value) is int:
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def _n(obj: Any, *names: str) -> int | None:
    return _count(_get(obj, *names)) if obj is not None else None


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def _sum(*parts: int | None) -> int | None:
    """The sum of the known parts; None when the first (the base count) is unknown."""
    if parts[0] is None:
        return None
    return sum(p for p in parts if p is not None)


_Counts = dict[str, "int | None"]


def _openai_chat(u: Any) -> _Counts:
    # prompt_tokens holds the cached tokens; completion_tokens holds the reasoning
    details = _get(u, "prompt_tokens_details")
    out_details = _get(u, "completion_tokens_details")
    return {
        INPUT: _n(u, "prompt_tokens"),
        OUTPUT: _n(u, "completion_tokens"),
        TOTAL: _n(u, "total_tokens"),
        CACHE_READ: _n(details, "cached_tokens"),
        # cache_write_tokens: OpenAI's; cache_creation_input_tokens: gateways speaking the
        # chat format for Anthropic models (LiteLLM), a part of their prompt_tokens too
        CACHE_WRITE: _first(
            _n(details, "cache_write_tokens"), _n(u, "cache_creation_input_tokens")
        ),
        REASONING: _n(out_details, "reasoning_tokens"),
    }


def _openai_responses(u: Any) -> _Counts:
    return {
        INPUT: _n(u, "input_tokens"),
        OUTPUT: _n(u, "output_tokens"),
        TOTAL: _n(u, "total_tokens"),
        CACHE_READ: _n(_get(u, "input_tokens_details"), "cached_tokens"),
        CACHE_WRITE: _n(_get(u, "input_tokens_details"), "cache_write_tokens"),
        REASONING: _n(_get(u, "output_tokens_details"), "reasoning_tokens"),
    }


def _anthropic(u: Any) -> _Counts:
    # input_tokens excludes the cache: what was read and written is added to it
    read = _n(u, "cache_read_input_tokens")
    write = _n(u, "cache_creation_input_tokens")
    return {
        INPUT: _sum(_n(u, "input_tokens"), read, write),
        OUTPUT: _n(u, "output_tokens"),
        CACHE_READ: read,
        CACHE_WRITE: write,
        # thinking is a part of output_tokens
        REASONING: _n(_get(u, "output_tokens_details"), "thinking_tokens"),
    }


def _langchain(u: Any) -> _Counts:
    # LangChain's UsageMetadata: input_tokens is every input token (its provider packages
    # add the cache in), output_tokens every output token
    ins = _get(u, "input_token_details")
    outs = _get(u, "output_token_details")
    write = _n(ins, *_tiered("cache_creation"))
    if not write:
        # langchain-anthropic moves cache writes to per-TTL keys (and zeroes the total)
        write = _sum(_n(ins, "ephemeral_5m_input_tokens"), _n(ins, "ephemeral_1h_input_tokens"))
        write = write if write is not None else _n(ins, "ephemeral_1h_input_tokens")
        write = write if write is not None else _n(ins, *_tiered("cache_creation"))
    return {
        INPUT: _n(u, "input_tokens"),
        OUTPUT: _n(u, "output_tokens"),
        TOTAL: _n(u, "total_tokens"),
        CACHE_READ: _n(ins, *_tiered("cache_read")),
        CACHE_WRITE: write,
        REASONING: _n(outs, *_tiered("reasoning")),
    }


def _tiered(name: str) -> tuple[str, str, str]:
    """A UsageMetadata detail key and its service-tier variants (langchain-openai)."""
    return name, f"priority_{name}", f"flex_{name}"


def _gemini(u: Any) -> _Counts:
    # promptTokenCount holds the cached content; candidatesTokenCount leaves thinking out;
    # the prompt of a tool use (toolUsePromptTokenCount) is input too
    prompt = _n(u, "promptTokenCount", "prompt_token_count")
    tool_prompt = _n(u, "toolUsePromptTokenCount", "tool_use_prompt_token_count")
    candidates = _n(u, "candidatesTokenCount", "candidates_token_count")
    thoughts = _n(u, "thoughtsTokenCount", "thoughts_token_count")
    output = _sum(candidates, thoughts) if candidates is not None else thoughts
    return {
        INPUT: _sum(prompt, tool_prompt),
        OUTPUT: output,
        TOTAL: _n(u, "totalTokenCount", "total_token_count"),
        CACHE_READ: _n(u, "cachedContentTokenCount", "cached_content_token_count"),
        REASONING: thoughts,
    }


def _bedrock(u: Any) -> _Counts:
    # Converse TokenUsage: inputTokens excludes what was read from and written to the cache
    read = _n(u, "cacheReadInputTokens")
    write = _n(u, "cacheWriteInputTokens")
    return {
        INPUT: _sum(_n(u, "inputTokens"), read, write),
        OUTPUT: _n(u, "outputTokens"),
        CACHE_READ: read,
        CACHE_WRITE: write,
    }


def _bedrock_nova(u: Any) -> _Counts:
    # invoke_model body of Amazon Nova: Converse's counts under other cache names
    read = _n(u, "cacheReadInputTokenCount", "cacheReadInputTokens")
    write = _n(u, "cacheWriteInputTokenCount", "cacheWriteInputTokens")
    return {
        INPUT: _sum(_n(u, "inputTokens"), read, write),
        OUTPUT: _n(u, "outputTokens"),
        CACHE_READ: read,
        CACHE_WRITE: write,
    }


def _bedrock_llama(u: Any) -> _Counts:
    # invoke_model body of Meta Llama: the counts sit at the top of the body
    return {
        INPUT: _n(u, "prompt_token_count"),
        OUTPUT: _n(u, "generation_token_count"),
    }


def _otel(u: Any) -> _Counts:
    # span attributes: the GenAI semantic conventions (input includes the cache), their
    # older names, and OpenInference's llm.token_count.*
    return {
        INPUT: _n(
            u, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"
        ),
        OUTPUT: _n(
            u,
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
        ),
        TOTAL: _n(u, "gen_ai.usage.total_tokens", "llm.token_count.total"),
        CACHE_READ: _n(
            u, "gen_ai.usage.cache_read.input_tokens", "llm.token_count.prompt_details.cache_read"
        ),
        CACHE_WRITE: _n(
            u,
            "gen_ai.usage.cache_creation.input_tokens",
            "llm.token_count.prompt_details.cache_write",
        ),
        REASONING: _n(
            u,
            "gen_ai.usage.reasoning.output_tokens",
            "llm.token_count.completion_details.reasoning",
        ),
    }


def _ours(u: Any) -> _Counts:
    """Already in this vocabulary (a host's own events, the demo)."""
    return {key: _n(u, key) for key in KEYS}


def _sniff(u: Mapping[str, Any]) -> Callable[[Any], _Counts] | None:
    """The shape of a usage whose kind is not named, by keys only its shape has."""
    if "prompt_tokens" in u or "completion_tokens" in u:
        return _openai_chat
    if "cache_read_input_tokens" in u or "cache_creation_input_tokens" in u:
        return _anthropic
    if "input_tokens_details" in u:
        return _openai_responses
    if "output_tokens_details" in u:
        thinking = _get(u["output_tokens_details"], "thinking_tokens") is not None
        return _anthropic if thinking else _openai_responses
    if "input_tokens" in u or "output_tokens" in u:
        # LangChain's UsageMetadata (total and details in it) or a bare Anthropic usage:
        # without cache fields the two read the same
        return _langchain
    if "generation_token_count" in u:
        return _bedrock_llama
    if any(k in u for k in ("promptTokenCount", "prompt_token_count", "candidatesTokenCount")):
        return _gemini
    if "cacheReadInputTokenCount" in u or "cacheWriteInputTokenCount" in u:
        return _bedrock_nova
    if "cacheReadInputTokens" in u or "cacheWriteInputTokens" in u:
        return _bedrock
    if any(k in u for k in KEYS):
        return _ours
    if any(k.startswith(("gen_ai.usage.", "llm.token_count.")) for k in u):
        return _otel
    return None


#: usage_kind -> its conversion ("llamaindex": whichever provider's object the LLM class
#: returned, recognised by its keys)
KINDS: dict[str, Callable[[Any], _Counts]] = {
    "openai_chat": _openai_chat,
    "openai_responses": _openai_responses,
    "openai_embeddings": _openai_chat,
    "anthropic": _anthropic,
    "langchain": _langchain,
    "gemini": _gemini,
    "bedrock": _bedrock,
    "bedrock_nova": _bedrock_nova,
    "bedrock_llama": _bedrock_llama,
    "otel": _otel,
    "llamaindex": lambda u: (_sniff(u) or _ours)(u),
    "greenflash": _ours,
}


def normalize(kind: str | None, usage: Mapping[str, Any]) -> dict[str, int]:
    """``usage`` (the provider's, as a dict) in the one vocabulary; never raises.

    ``kind`` names the shape (a key of :data:`KINDS`); None or an unknown kind is
    recognised by its keys. Only the counts the provider reported are returned;
    ``totalTokens`` is input + output when both are known, else the provider's total.
    """
    try:
        convert = KINDS.get(kind) if kind is not None else None
        if convert is None:
            convert = _sniff(usage)
            if convert is None:
                return {}
        counts = convert(usage)
        inp, out = counts.get(INPUT), counts.get(OUTPUT)
        if inp is not None and out is not None:
            counts[TOTAL] = inp + out
        return {key: value for key in KEYS if (value := counts.get(key)) is not None}
    except Exception:  # a surprising object loses its usage, never the event
        return {}
