"""Offline stand-ins for the notebooks: fake models that behave like real ones.

Everything here replaces a paid model or the network, nothing else: the frameworks, our
integrations, the uploader and the collector in the notebooks are the real thing.
Each function imports its framework lazily, so the OpenAI notebook never imports
LangChain and vice versa.

* LangChain: :func:`fake_chat_model` (a ``GenericFakeChatModel`` that can be bound to
  tools and reports a model name), :func:`keyword_retriever`.
* OpenAI: :func:`fake_openai_client` (a real ``openai.OpenAI`` whose HTTP goes to an
  ``httpx.MockTransport``); :func:`openai_reply` is the fake server's logic, also used
  by the README test's loopback server.
* Anthropic: :func:`fake_anthropic_client` (a real ``anthropic.Anthropic`` on the test
  suite's fake Messages API); :func:`anthropic_fake` is that fake server, also served on
  loopback by the README test.
* LlamaIndex: :func:`fake_llm`, :func:`keyword_embedding`, :func:`fake_agent_llm`.
* Google Gen AI, Amazon Bedrock, LiteLLM: :func:`fake_gemini_client`,
  :func:`fake_bedrock_client`, :func:`fake_openai_url` (the test suite's fake Gemini,
  Bedrock Runtime and OpenAI APIs, served on loopback ports for the rest of the session
  and answering from the request like the fakes above); :func:`litellm_logged`.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

CITIES = {
    "france": "Paris",
    "paris": "Paris",
    "portugal": "Lisbon",
    "lisbon": "Lisbon",
    "germany": "Berlin",
    "berlin": "Berlin",
    "japan": "Tokyo",
    "tokyo": "Tokyo",
    "italy": "Rome",
    "rome": "Rome",
}


def _city(text: str) -> str:
    """The first city (or a country's capital) named in ``text``; Paris by default."""
    low = text.lower()
    found = [(low.index(k), v) for k, v in CITIES.items() if k in low]
    return min(found)[1] if found else "Paris"


_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "my",
        "of",
        "on",
        "or",
        "the",
        "to",
        "what",
        "when",
        "where",
        "which",
        "with",
        "you",
        "your",
    ]
)


def _words(text: str) -> set[str]:
    """Content words, crudely singularised: enough for a keyword retriever."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words if w not in _STOP}


# --------------------------------------------------------------------------- LangChain


def fake_chat_model(replies: Iterable[Any], model: str = "fake-gpt-1") -> Any:
    """A LangChain chat model that answers with ``replies`` in order.

    Each reply is a string or an ``AIMessage`` (use one with ``tool_calls`` to make an
    agent call a tool). ``bind_tools`` is accepted (and ignored), so LangGraph agents
    can use it; the model name shows up like a real provider's.
    """
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class FakeToolCallingChatModel(GenericFakeChatModel):
        model: str = "fake-gpt-1"

        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
            return self

    messages = [r if isinstance(r, AIMessage) else AIMessage(content=str(r)) for r in replies]
    return FakeToolCallingChatModel(messages=iter(messages), model=model)


def keyword_retriever(texts: dict[str, str], k: int = 2) -> Any:
    """A LangChain retriever over ``{source: text}`` ranking by shared words."""
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    docs = [Document(page_content=t, metadata={"source": s}) for s, t in texts.items()]

    class KeywordRetriever(BaseRetriever):
        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            q = _words(query)
            scored = sorted(docs, key=lambda d: -len(q & _words(d.page_content)))
            return [d for d in scored[:k] if q & _words(d.page_content)]

    return KeywordRetriever()


# ------------------------------------------------------------------------------ OpenAI


def _usage(prompt: str, completion: str) -> dict[str, int]:
    p, c = len(prompt.split()), len(completion.split())
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _chat_answer(messages: list[dict[str, Any]], tools: list[Any] | None) -> dict[str, Any]:
    last = messages[-1]
    user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    text = str(user.get("content") or "")
    if last.get("role") == "tool":
        return {"role": "assistant", "content": f"Good news: {last.get('content')}"}
    if tools:
        name = tools[0]["function"]["name"]
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{zlib.crc32(text.encode()) % 10_000}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps({"city": _city(text)})},
                }
            ],
        }
    if "capital" in text.lower() or any(k in text.lower() for k in CITIES):
        return {"role": "assistant", "content": f"The capital you asked about is {_city(text)}."}
    return {"role": "assistant", "content": f"Here is a short answer about: {text[:60]}"}


def _sse(events: Iterable[Any], done: bool = True) -> bytes:
    out = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    return (out + ("data: [DONE]\n\n" if done else "")).encode()


def openai_reply(path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """The fake OpenAI server: (status, headers, body) for a POST to ``path``.

    Answers ``/chat/completions`` (plain, streamed, tool calls, tool results) and
    ``/responses`` (plain), deterministically, from the request alone.
    """
    model = body.get("model", "gpt-4o-mini")
    as_json = {"content-type": "application/json"}
    if path.endswith("/chat/completions"):
        messages = body.get("messages") or []
        msg = _chat_answer(messages, body.get("tools"))
        prompt = " ".join(str(m.get("content") or "") for m in messages)
        usage = _usage(prompt, str(msg.get("content") or ""))
        finish = "tool_calls" if msg.get("tool_calls") else "stop"
        cid = f"chatcmpl-{zlib.crc32(json.dumps(messages).encode())}"
        if not body.get("stream"):
            completion = {
                "id": cid,
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                "usage": usage,
            }
            return 200, as_json, json.dumps(completion).encode()
        base = {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": model}
        words = re.findall(r"\S+\s*", str(msg.get("content") or ""))
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        ]
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": w}}]} for w in words]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        return 200, {"content-type": "text/event-stream"}, _sse(chunks)
    if path.endswith("/responses"):
        raw = body.get("input")
        text = raw if isinstance(raw, str) else json.dumps(raw)
        if isinstance(raw, list):
            users = [i for i in raw if isinstance(i, dict) and i.get("role") == "user"]
            text = str(users[-1].get("content")) if users else text
        answer = _chat_answer([{"role": "user", "content": text}], None)["content"]
        if "only" in str(body.get("instructions") or "") and answer.startswith("The capital"):
            answer = _city(text)
        rid = f"resp_{zlib.crc32((text + str(body.get('previous_response_id'))).encode())}"
        u = _usage(text, answer)
        response = {
            "id": rid,
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": model,
            "instructions": body.get("instructions"),
            "previous_response_id": body.get("previous_response_id"),
            "output": [
                {
                    "id": f"msg_{rid}",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": answer, "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": u["prompt_tokens"],
                "output_tokens": u["completion_tokens"],
                "total_tokens": u["total_tokens"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
        return 200, as_json, json.dumps(response).encode()
    return 404, as_json, json.dumps({"error": {"message": f"no fake for {path}"}}).encode()


def fake_openai_client() -> Any:
    """A real ``openai.OpenAI`` client whose requests are answered by :func:`openai_reply`
    through ``httpx.MockTransport``: no network, no key."""
    import httpx

    from openai import OpenAI

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers, content = openai_reply(request.url.path, json.loads(request.content))
        return httpx.Response(status, headers=headers, content=content)

    return OpenAI(
        api_key="sk-fake",
        base_url="http://api.openai.invalid/v1",  # answered by the MockTransport: never sent
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


# --------------------------------------------------------------------------- Anthropic


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(b.get("text") or "") for b in content or () if isinstance(b, dict))


def anthropic_fake() -> Any:
    """The test suite's fake Messages API (``tests/helpers/fake_anthropic.py``: the real
    wire format, SSE included), answering from the request alone: with tools offered and
    the user just spoken, a ``tool_use`` of the first tool for the city named; after a
    ``tool_result``, ``Good news: <result>``; otherwise a capital, like the OpenAI fake.
    With extended thinking enabled, each reply opens with a short ``thinking`` block."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.helpers.fake_anthropic import FakeAnthropic, Reply, text, thinking, tool_use

    def answer(body: dict[str, Any]) -> Any:
        messages = body.get("messages") or []
        content = messages[-1].get("content") if messages else ""
        results = (
            [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
            if isinstance(content, list)
            else []
        )
        blocks = []
        if (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
            thought = "The tool has answered: summarise it." if results else "The tool knows this."
            blocks.append(thinking(thought))
        if results:
            return Reply([*blocks, text(f"Good news: {_block_text(results[0].get('content'))}")])
        said = _block_text(content)
        if body.get("tools"):
            name = body["tools"][0]["name"]
            call_id = f"toolu_{zlib.crc32(said.encode()) % 10_000:04d}"
            blocks += [text("Let me check."), tool_use(name, {"city": _city(said)}, id=call_id)]
            return Reply(blocks)
        reply = _chat_answer([{"role": "user", "content": said}], None)["content"]
        return Reply([*blocks, text(reply)])

    fake = FakeAnthropic()
    fake.default = answer
    return fake


def fake_anthropic_client() -> Any:
    """A real ``anthropic.Anthropic`` client answered by :func:`anthropic_fake` through
    ``httpx2.MockTransport``: no network, no key."""
    return anthropic_fake().client()


# -------------------------------------------------------------------------- LlamaIndex


def fake_llm(model: str = "fake-llm-1") -> Any:
    """A LlamaIndex completion LLM that answers a RAG prompt from its first context line."""
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.llms import MockLLM
    from llama_index.core.llms.callbacks import llm_completion_callback

    class FakeRagLLM(MockLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=model, num_output=256)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            m = re.search(r"-{5,}\n(.*?)\n", prompt, re.S)
            line = m.group(1).strip() if m else prompt.strip().splitlines()[-1]
            return CompletionResponse(text=f"According to the docs: {line}")

    return FakeRagLLM()


def keyword_embedding(dim: int = 256) -> Any:
    """A LlamaIndex embedding model: hashed bag of words, so retrieval ranks sensibly."""
    from llama_index.core.embeddings import MockEmbedding

    class KeywordEmbedding(MockEmbedding):
        def _vec(self, text: str) -> list[float]:
            v = [0.0] * self.embed_dim
            for w in _words(text):
                v[zlib.crc32(w.encode()) % self.embed_dim] += 1.0
            return v if any(v) else [1.0] + [0.0] * (self.embed_dim - 1)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._vec(text)

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._vec(query)

        async def _aget_text_embedding(self, text: str) -> list[float]:
            return self._vec(text)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._vec(query)

    return KeywordEmbedding(embed_dim=dim)


def fake_agent_llm(plan: Sequence[tuple[str, dict[str, Any]]], answer: str) -> Any:
    """A LlamaIndex function-calling LLM: calls the tools in ``plan`` one per step
    (``(tool_name, kwargs)``), then answers ``answer``."""
    from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    def respond(messages: Sequence[Any], **kwargs: Any) -> Any:
        last_user = max(i for i, m in enumerate(messages) if m.role == MessageRole.USER)
        done = sum(1 for m in messages[last_user:] if m.role == MessageRole.TOOL)
        if done < len(plan):
            name, args = plan[done]
            block = ToolCallBlock(tool_call_id=f"call_{done + 1}", tool_name=name, tool_kwargs=args)
            return ChatMessage(role=MessageRole.ASSISTANT, blocks=[block])
        return ChatMessage(role=MessageRole.ASSISTANT, content=answer)

    return MockFunctionCallingLLM(response_generator=respond, is_chat_model=True)


# ------------------------------------------- Google Gen AI, Amazon Bedrock, LiteLLM

# The loopback servers of the fakes below: they serve until the kernel exits.
_SERVING = contextlib.ExitStack()


def _test_helpers() -> None:
    """Make the test suite's ``helpers`` package importable (as the tests import it).

    ``tests/`` goes *last* on ``sys.path``: its folders named after providers must not
    shadow the installed packages."""
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.append(tests)


def _gemini_answer(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Parts of the fake Gemini's reply: after a ``functionResponse``, ``Good news:
    <result>``; with functions declared, a ``functionCall`` of the first one for the city
    named; otherwise a capital, like the OpenAI fake."""
    from helpers.fake_gemini import function_call, text

    contents = body.get("contents") or []
    parts = (contents[-1].get("parts") or []) if contents else []
    results = [p["functionResponse"] for p in parts if "functionResponse" in p]
    if results:
        response = results[0].get("response") or {}
        return [text(f"Good news: {response.get('result', response)}")]
    said = " ".join(str(p.get("text") or "") for p in parts)
    declared = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
    if declared:
        return [function_call(declared[0]["name"], {"city": _city(said)})]
    return [text(_chat_answer([{"role": "user", "content": said}], None)["content"])]


def fake_gemini_client() -> Any:
    """A real ``google.genai.Client`` on the test suite's fake Gemini API
    (``tests/helpers/fake_gemini.py``: the REST wire format, SSE included), served on a
    loopback port and answering from the request (:func:`_gemini_answer`)."""
    _test_helpers()
    from helpers.fake_gemini import FakeGemini

    class ScriptedGemini(FakeGemini):
        def handle(self, request: Any) -> Any:
            raw = request.read()
            self.queue(*_gemini_answer(json.loads(raw) if raw else {}))
            return super().handle(request)

    fake = ScriptedGemini()
    return fake.client(_SERVING.enter_context(fake.serve()))


def _bedrock_answer(body: Any) -> Any:
    """The fake Bedrock's Converse reply: after a ``toolResult``, ``Good news: <result>``;
    with tools configured, ``Let me check.`` and a ``toolUse`` of the first tool for the
    city named; otherwise a capital, like the OpenAI fake."""
    from helpers.fake_bedrock import Reply, text, tool_use

    messages = (body.get("messages") or []) if isinstance(body, dict) else []
    content = (messages[-1].get("content") or []) if messages else []
    results = [b["toolResult"] for b in content if "toolResult" in b]
    if results:
        said = " ".join(str(b.get("text") or "") for b in results[0].get("content") or ())
        return Reply([text(f"Good news: {said}")])
    said = " ".join(str(b.get("text") or "") for b in content)
    tools = ((body.get("toolConfig") or {}).get("tools") or []) if isinstance(body, dict) else []
    if tools:
        name = tools[0]["toolSpec"]["name"]
        call_id = f"tooluse_{zlib.crc32(said.encode()) % 10_000:04d}"
        use = tool_use(name, {"city": _city(said)}, id=call_id)
        return Reply([text("Let me check."), use], stop="tool_use")
    return Reply([text(_chat_answer([{"role": "user", "content": said}], None)["content"])])


def fake_bedrock_client() -> Any:
    """A real boto3 ``bedrock-runtime`` client on the test suite's fake Bedrock Runtime
    (``tests/helpers/fake_bedrock.py``: Converse JSON and the event-stream framing),
    served on a loopback port and answering from the request (:func:`_bedrock_answer`)."""
    _test_helpers()
    from helpers.fake_bedrock import FakeBedrock, bedrock_client

    class ScriptedBedrock(FakeBedrock):
        def _next(self, request: Any) -> Any:
            return _bedrock_answer(request)

    return bedrock_client(_SERVING.enter_context(ScriptedBedrock().serve()))


def fake_openai_url() -> str:
    """The base URL (``.../v1``) of the test suite's fake OpenAI API
    (``tests/helpers/fake_openai.py``) on a loopback port, answering chat completions from
    the request like :func:`openai_reply`: a tool call when tools are offered, ``Good
    news: <result>`` after a tool result, otherwise a capital."""
    _test_helpers()
    from helpers.fake_openai import FakeOpenAI, Reply, ToolCall

    class ScriptedOpenAI(FakeOpenAI):
        def __call__(self, request: Any) -> Any:
            raw = request.read()
            body = json.loads(raw) if raw else {}
            msg = _chat_answer(body.get("messages") or [], body.get("tools"))
            calls = [
                ToolCall(c["function"]["name"], json.loads(c["function"]["arguments"]), c["id"])
                for c in msg.get("tool_calls") or ()
            ]
            self.reply(Reply(text=msg.get("content"), tool_calls=calls))
            return super().__call__(request)

    return str(_SERVING.enter_context(ScriptedOpenAI().serve()))


def litellm_logged(timeout: float = 30.0) -> None:
    """Return once LiteLLM has run the callbacks of every call made so far.

    LiteLLM hands a sync call's success callbacks to its pool of logging threads and
    returns at once; a script need not care, but a notebook that shows what was recorded
    right away must wait for them. The pool takes tasks in order: once every one of its
    threads is held by a task queued now, every earlier task has finished."""
    from litellm.litellm_core_utils.thread_pool_executor import MAX_THREADS, executor

    barrier = threading.Barrier(MAX_THREADS + 1)
    for _ in range(MAX_THREADS):
        executor.submit(barrier.wait, timeout)
    barrier.wait(timeout)
