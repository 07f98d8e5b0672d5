"""LlamaIndex integration: :class:`GreenflashInstrumentor` on the instrumentation API.

Usage::

    from gf_integrations.llamaindex import GreenflashInstrumentor

    GreenflashInstrumentor(external_user_id="u1").instrument()   # once, at start-up

    with gf_integrations.conversation(external_conversation_id="c1", external_user_id="u1"):
        query_engine.query("What is the capital of France?")

Conversation identity, first hit wins: ``gf.conversation(...)`` scope > LlamaIndex
``instrument_tags({"gf.conversation_id": ..., "gf.user_id": ..., "gf.organization_id": ...})``
> the instrumentor's keywords > the client's configured defaults > one id per root span.
It is captured once, when a root span starts (in the host's context), and kept with the
root, so work that LlamaIndex moves to other tasks or threads stays in its conversation.

What is recorded: LLM chat/completion calls (system prompt once, history, reply, model,
usage, latency; streams at their end event), query engines (the query as the user's
words, retrievals, the answer as ``final_response`` with the retrieved text as context),
chat engines, agents (``FunctionAgent``/``AgentWorkflow``: tool calls, results, errors,
final answer), prompt templates (components with ``{{var}}`` placeholders + variables),
embeddings (counts and dimensions only; an index build as one summary; a retrieval's query
vector is part of its retrieval message) and, with ``capture_steps=True``, workflow steps.
Handlers never raise into LlamaIndex (its dispatcher would swallow errors silently; we
log each kind once instead).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import datetime as dt
import inspect
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.span import active_span_id
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
    from llama_index_instrumentation import get_dispatcher
    from llama_index_instrumentation.dispatcher import active_instrument_tags
    from pydantic import PrivateAttr
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.llamaindex needs llama-index-core: "
        "pip install 'gf-integrations[llamaindex]'"
    ) from None

from .client import GreenflashClient, get_client
from .core.context import (
    Conv,
    IdentityDefaults,
    current_scope,
    register_capture_probe,
    resolve_conv,
)
from .core.events import (
    ChatMessage,
    Document,
    Embedding,
    Event,
    FinalAnswer,
    LLMCall,
    PromptComponent,
    Retrieval,
    Step,
    SystemPrompt,
    ToolCallSpec,
    ToolResult,
    UserInput,
    now,
)
from .core.ids import new_id
from .core.targets import AnswerRef, ObjectMap, register_target_resolver

__all__ = ["GreenflashInstrumentor"]

log = logging.getLogger("gf_integrations")

TAG_CONVERSATION = "gf.conversation_id"
TAG_USER = "gf.user_id"
TAG_ORGANIZATION = "gf.organization_id"

_PENDING_TTL = 300.0  # an LLM stream nobody finishes or closes is closed out after this
# a span LlamaIndex never closes (its event loop ended first, a killed task) is forgotten
# once its root has been idle this long; and at most this many spans are open at once
_SPAN_TTL = 3600.0
_SPANS_MAX = 50_000
_RECENT_MAX = 4096
_BUILD_IDLE = 2.0  # an index build's embedding summary is sent after this idle time
_SWEEP_EVERY = 2.0
_AWAIT_MAX = 256
# root span result (Response, agent output) -> its answer (see core/targets.py)
_answers: ObjectMap[AnswerRef] = ObjectMap()
_UNKNOWN_MODELS = frozenset({"", "unknown", "none", "default"})
_CHAT_ENGINE_METHODS = frozenset({"chat", "stream_chat", "achat", "astream_chat"})
_RETRIEVE_METHODS = frozenset({"retrieve", "aretrieve", "_retrieve", "_aretrieve"})


def _warn_once(seen: set[str], kind: str, exc: BaseException | None = None) -> None:
    if kind in seen:
        return
    seen.add(kind)
    log.warning(
        "gf_integrations: LlamaIndex handler error in %s (further ones are not logged): %r",
        kind,
        exc,
    )


def _method(span_id: str) -> tuple[str, str]:
    """``"Class.method-uuid"`` -> ``("Class", "method")``."""
    # the suffix is "-" + a 36-character uuid4
    head = span_id[:-37] if len(span_id) > 37 and span_id[-37] == "-" else span_id
    cls, _, meth = head.rpartition(".")
    return cls, meth


# -- conversion (runs on the worker via Lazy callables unless noted) -------------------------


def _role(msg: Any) -> str:
    role = getattr(msg, "role", "user")
    return str(getattr(role, "value", role))


def _blocks_text(msg: Any) -> tuple[str | None, list[ToolCallSpec], str | None]:
    """Text, tool calls and reasoning of a LlamaIndex ChatMessage."""
    texts: list[str] = []
    calls: list[ToolCallSpec] = []
    thinking: list[str] = []
    blocks = getattr(msg, "blocks", None) or ()
    for b in blocks:
        kind = getattr(b, "block_type", None)
        if kind == "text":
            texts.append(str(getattr(b, "text", "") or ""))
        elif kind == "tool_call":
            calls.append(
                {
                    "id": getattr(b, "tool_call_id", None),
                    "name": str(getattr(b, "tool_name", "") or "unknown_tool"),
                    "arguments": getattr(b, "tool_kwargs", None),
                }
            )
        elif kind == "thinking":
            content = getattr(b, "content", None)
            if content:
                thinking.append(str(content))
    extra = getattr(msg, "additional_kwargs", None) or {}
    if not calls and isinstance(extra, Mapping) and extra.get("tool_calls"):
        for raw in extra["tool_calls"] or ():
            calls.append(_openai_style_call(raw))
    if not blocks:
        content = getattr(msg, "content", None)
        text: str | None = None if content is None else str(content)
    else:
        text = "".join(texts) if texts else None
    return text, calls, ("\n".join(thinking) or None)


def _openai_style_call(raw: Any) -> ToolCallSpec:
    get = raw.get if isinstance(raw, Mapping) else (lambda k, d=None: getattr(raw, k, d))
    fn = get("function") or {}
    fget = fn.get if isinstance(fn, Mapping) else (lambda k, d=None: getattr(fn, k, d))
    return {
        "id": get("id") or get("tool_id"),
        "name": str(fget("name") or get("tool_name") or "unknown_tool"),
        "arguments": fget("arguments") if fn else get("tool_kwargs"),
    }


def _to_neutral(msg: Any) -> ChatMessage:
    role = _role(msg)
    text, calls, reasoning = _blocks_text(msg)
    out: ChatMessage = {"role": role, "content": text}
    if calls:
        out["tool_calls"] = calls
    if reasoning:
        out["reasoning"] = reasoning
    if role == "tool":
        extra = getattr(msg, "additional_kwargs", None) or {}
        if isinstance(extra, Mapping):
            out["tool_call_id"] = extra.get("tool_call_id") or extra.get("tool_id")
            out["name"] = extra.get("name") or extra.get("tool_name")
            if extra.get("is_error"):
                out["status"] = "error"
    elif role in ("developer",):
        out["role"] = "system"
    return out


def _convert_messages(msgs: Sequence[Any]) -> list[ChatMessage]:
    return [_to_neutral(m) for m in msgs]


def _query_text(q: Any) -> str:
    if isinstance(q, str):
        return q
    text = getattr(q, "query_str", None)
    return str(text) if text is not None else str(q)


def _documents(nodes: Sequence[Any]) -> list[Document]:
    docs: list[Document] = []
    for nws in nodes:
        node = getattr(nws, "node", nws)
        try:
            text = node.get_content()
        except Exception:
            text = str(getattr(node, "text", "") or "")
        meta = getattr(node, "metadata", None)
        docs.append(
            {
                "id": getattr(node, "node_id", None) or getattr(node, "id_", None),
                "text": text,
                "metadata": dict(meta) if isinstance(meta, Mapping) and meta else None,
                "score": getattr(nws, "score", None),
            }
        )
    return docs


_TEMPLATE_CACHE: dict[Any, tuple[list[PromptComponent], frozenset[str]]] = {}
_TEMPLATE_CACHE_MAX = 256


def _template_parts(inner: Any) -> tuple[list[PromptComponent], frozenset[str]] | None:
    """Components and placeholder names of a template; cached by its texts (host thread)."""
    message_templates = getattr(inner, "message_templates", None)
    if message_templates:
        raw: list[tuple[str, str]] = []
        for m in message_templates:
            text, _, _ = _blocks_text(m)
            if text:
                raw.append((_role(m), text))
        key: Any = tuple(raw)
    else:
        text = getattr(inner, "template", None)
        if not (isinstance(text, str) and text):
            return None
        raw = [("template", text)]
        key = text
    hit = _TEMPLATE_CACHE.get(key)
    if hit is not None:
        return hit
    comps: list[PromptComponent] = []
    names: set[str] = set()
    for role, text in raw:
        content, found = _braces(text)
        names.update(found)
        comp: PromptComponent = {"content": content, "name": role}
        if role == "template":
            comp["type"] = "user"
        else:
            comp["type"] = role if role in ("system", "user") else "other"
            comp["source"] = "customer"
        comps.append(comp)
    if not comps:
        return None
    if len(_TEMPLATE_CACHE) >= _TEMPLATE_CACHE_MAX:
        _TEMPLATE_CACHE.clear()
    parts = (comps, frozenset(names))
    _TEMPLATE_CACHE[key] = parts
    return parts


def _template_prompt(template: Any, args: Mapping[str, Any] | None) -> SystemPrompt | None:
    """A LlamaIndex prompt template as components with ``{{var}}`` and variables."""
    inner = getattr(template, "default_template", None) or template
    parts = _template_parts(inner)
    if parts is None:
        return None
    comps, names = parts
    variables: dict[str, str] = {}
    for source in (getattr(template, "kwargs", None), getattr(inner, "kwargs", None), args):
        if isinstance(source, Mapping):
            for k, v in source.items():
                if k in names:
                    variables[str(k)] = v if isinstance(v, str) else str(v)
    # the recorder only reads the cached components (it builds new wire dicts)
    return SystemPrompt(components=list(comps), variables=variables or None)


def _braces(text: str) -> tuple[str, list[str]]:
    """Python-format ``{var}`` -> Greenflash ``{{var}}`` (``{{``/``}}`` literals stay single).

    Returns the converted text and the placeholder names found.
    """
    names: list[str] = []
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{" and i + 1 < n and text[i + 1] == "{":
            out.append("{")
            i += 2
        elif c == "}" and i + 1 < n and text[i + 1] == "}":
            out.append("}")
            i += 2
        elif c == "{":
            j = text.find("}", i + 1)
            name = text[i + 1 : j] if j > 0 else ""
            if j > 0 and name.isidentifier():
                out.append("{{" + name + "}}")
                names.append(name)
                i = j + 1
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), names


def _raw_of(response: Any) -> Any:
    """The provider's response object behind a ChatResponse/CompletionResponse.

    A streamed OpenAI Responses call (``OpenAIResponses``) ends on a ``response.completed``
    event whose ``response`` holds the model, usage and status.
    """
    raw = getattr(response, "raw", None)
    if raw is not None and not isinstance(raw, Mapping) and getattr(raw, "model", None) is None:
        inner = getattr(raw, "response", None)
        if inner is not None and getattr(inner, "model", None) is not None:
            return inner
    return raw


def _usage_of(response: Any) -> dict[str, Any] | None:
    """Token usage from a ChatResponse/CompletionResponse (host thread: attribute reads)."""
    raw = _raw_of(response)
    usage: Any = None
    if isinstance(raw, Mapping):
        usage = raw.get("usage") or raw.get("usage_metadata")
    elif raw is not None:
        usage = getattr(raw, "usage", None) or getattr(raw, "usage_metadata", None)
    if usage is not None and not isinstance(usage, Mapping):
        dump = getattr(usage, "model_dump", None) or getattr(usage, "dict", None)
        try:
            # exclude_none: the same usage object recorded by wrap_openai looks the same
            usage = dump(exclude_none=True) if dump else dict(vars(usage))
        except Exception:
            usage = None
    if isinstance(usage, Mapping) and usage:
        return dict(usage)
    extra = getattr(response, "additional_kwargs", None)
    if isinstance(extra, Mapping) and (
        "prompt_tokens" in extra or "completion_tokens" in extra or "total_tokens" in extra
    ):
        return {
            k: extra[k]
            for k in ("prompt_tokens", "completion_tokens", "total_tokens")
            if k in extra
        }
    return None


def _raw_model(response: Any) -> str | None:
    raw = _raw_of(response)
    model = raw.get("model") if isinstance(raw, Mapping) else getattr(raw, "model", None)
    return model if isinstance(model, str) and model else None


def _finish_reason(response: Any) -> str | None:
    raw = _raw_of(response)
    choices = raw.get("choices") if isinstance(raw, Mapping) else getattr(raw, "choices", None)
    if isinstance(choices, (list, tuple)) and choices:
        c = choices[0]
        fr = c.get("finish_reason") if isinstance(c, Mapping) else getattr(c, "finish_reason", None)
        return fr if isinstance(fr, str) else None
    if raw is not None and not isinstance(raw, Mapping):
        # a Responses API response: why it is incomplete, else its status (as wrap_openai)
        reason = getattr(getattr(raw, "incomplete_details", None), "reason", None)
        reason = reason or getattr(raw, "status", None)
        return reason if isinstance(reason, str) else None
    return None


def _chat_messages_above(span: _Span | None) -> list[Any] | None:
    """The chat messages a completion call was flattened from, if it runs inside ``chat``."""
    depth = 0
    while span is not None and depth < 8:
        if isinstance(span.chat_messages, (list, tuple)):
            return list(span.chat_messages)
        span = span.parent
        depth += 1
    return None


def _inside_retrieval(span: _Span | None) -> bool:
    """True when ``span`` runs inside a retriever's ``retrieve``/``aretrieve``."""
    depth = 0
    while span is not None and depth < 64:
        if _method(span.id)[1] in _RETRIEVE_METHODS:
            return True
        span = span.parent
        depth += 1
    return False


def _model_name(model_dict: Any, instance: Any = None) -> str | None:
    if isinstance(model_dict, Mapping):
        name = model_dict.get("model_name") or model_dict.get("model")
        if isinstance(name, str) and name.strip().lower() not in _UNKNOWN_MODELS:
            return name
        cls = model_dict.get("class_name")
        if isinstance(cls, str) and cls:
            return cls
    if instance is not None:
        return type(instance).__name__
    return None


# -- state --------------------------------------------------------------------------------


class _Root:
    """Per-root-span state: the conversation identity captured in the host's context."""

    __slots__ = (
        "agent",
        "answer",
        "chat_engine",
        "client",
        "conv",
        "explicit",
        "id",
        "live",
        "llm_active",
        "query",
        "react",
        "react_llm",
        "react_text",
        "span",
        "started",
        "touched",
    )

    def __init__(self, span_id: str, client: GreenflashClient, conv: Conv, explicit: bool) -> None:
        self.id = span_id
        self.client = client
        self.conv = conv
        self.explicit = explicit  # a conversation was named (scope, tags, keywords)
        self.live = 1  # open spans + pending LLM calls + pending query
        self.query: _Query | None = None
        self.agent = False
        self.chat_engine = False
        self.llm_active: _LLM | None = None
        self.react = False
        self.react_llm: _LLM | None = None
        self.react_text: str | None = None  # raw text of the last step without tool calls
        self.span: _Span | None = None
        self.started = time.monotonic()
        self.touched = self.started
        self.answer: str | None = None  # key of the last answer-bearing event (gf.rate)


class _Span:
    __slots__ = (
        "chat_messages",
        "id",
        "llm",
        "name",
        "parent",
        "root",
        "started",
        "step",
        "tool",
        "tool_input",
    )

    def __init__(self, span_id: str, parent: _Span | None, root: _Root) -> None:
        self.id = span_id
        self.parent = parent
        self.root = root
        # the LLM call this span belongs to (inherited: inner complete/chat spans)
        self.llm: _LLM | None = parent.llm if parent is not None else None
        self.name = ""
        self.tool: Any = None  # ToolCall event of a call_tool span, or the tool instance
        self.tool_input: Any = None
        self.step = False
        self.started: dt.datetime | None = None
        # the messages of an LLM's chat method: a completion-only model (OpenAILike with
        # is_chat_model=False) flattens them into a prompt and sends no chat event
        self.chat_messages: Any = None


class _Query:
    __slots__ = ("ended", "key", "last", "llm_calls", "span_id", "text")

    def __init__(self, span_id: str, text: str) -> None:
        self.span_id = span_id
        self.key = span_id
        self.text = text
        self.last: _LLM | None = None
        self.llm_calls = 0
        self.ended = False


class _LLM:
    """One recorded LLM call, owned by the outermost LLM-ish span (predict/chat/complete)."""

    __slots__ = (
        "error",
        "exited",
        "finished",
        "instance",
        "kind",
        "messages",
        "model_dict",
        "open",
        "output",
        "owner",
        "partial",
        "prior",
        "prompt",
        "reply",
        "response",
        "root",
        "silent",
        "started_at",
        "template",
        "template_args",
        "thread",
        "touched",
    )

    def __init__(self, owner: str, root: _Root, instance: Any) -> None:
        self.owner = owner
        self.root = root
        self.instance = instance
        self.kind = ""
        self.messages: list[Any] | None = None
        self.prompt: str | None = None
        self.template: Any = None
        self.template_args: Mapping[str, Any] | None = None
        self.model_dict: Any = None
        self.response: Any = None  # ChatResponse / CompletionResponse at the end
        self.reply: Any = None  # latest partial response while streaming
        # the one before: with stream usage on, the last chunk holds only usage and the
        # finish reason is in the chunk before it
        self.prior: Any = None
        self.output: str | None = None  # LLMPredictEndEvent output
        self.open = 0  # start events without their end
        self.exited = False
        self.finished = False
        self.partial = False
        self.silent = False
        self.error: BaseException | str | None = None
        self.started_at = now()
        self.touched = time.monotonic()
        self.thread = threading.get_ident()

    def drop_payload(self) -> None:
        """Release framework objects once recorded (exited spans may keep this alive)."""
        self.messages = None
        self.response = self.reply = self.prior = self.template = self.template_args = None
        self.output = self.prompt = None

    def finish_reason(self) -> str | None:
        return _finish_reason(self.response) or _finish_reason(self.prior)


class _Build:
    """Embedding calls outside any turn (index builds), summed into one message."""

    __slots__ = ("client", "conv", "count", "dims", "first", "key", "model", "touched")

    def __init__(self, conv: Conv, client: GreenflashClient) -> None:
        self.conv = conv
        self.client = client
        self.key = new_id()
        self.count = 0
        self.dims: int | None = None
        self.model: str | None = None
        self.first = now()
        self.touched = time.monotonic()


# -- the engine shared by both handlers ---------------------------------------------------------


class _Engine:
    def __init__(
        self,
        defaults: IdentityDefaults,
        client: GreenflashClient | None,
        capture_steps: bool,
    ) -> None:
        self.defaults = defaults
        self.client = client
        self.capture_steps = capture_steps
        self.lock = threading.RLock()
        self.spans: dict[str, _Span] = {}
        # exited spans, so that late children (lazy generators) still find their root;
        # bounded by count, oldest first out
        self.recent: collections.OrderedDict[str, _Span] = collections.OrderedDict()
        self.roots: dict[str, _Root] = {}
        self.pending: dict[str, _LLM] = {}  # LLM calls whose span exited before their end
        self.awaiting: collections.OrderedDict[str, tuple[float, _Root, _Query]] = (
            collections.OrderedDict()
        )
        self.builds: dict[str, _Build] = {}
        self.errors: set[str] = set()
        self.last_sweep = time.monotonic()
        self.active = True

    # ---- identity -----------------------------------------------------------------------

    def _new_root(self, span_id: str, tags: Mapping[str, Any] | None) -> _Root:
        client = self.client or get_client()
        scope = current_scope()
        if not tags:
            tags = active_instrument_tags.get()
        d = self.defaults
        tag_conv = _tag(tags, TAG_CONVERSATION)
        conv = resolve_conv(
            scope=scope,
            native_conversation_id=tag_conv or d.external_conversation_id,
            native_user_id=_tag(tags, TAG_USER) or d.external_user_id,
            native_organization_id=_tag(tags, TAG_ORGANIZATION) or d.external_organization_id,
            configured_user_id=client.settings.external_user_id,
            configured_organization_id=client.settings.external_organization_id,
            configured_product_id=d.product_id or client.settings.product_id,
            fallback_conversation_id=new_id(),
            extra_properties=d.properties,
        )
        explicit = bool(
            (scope is not None and scope.external_conversation_id)
            or tag_conv
            or d.external_conversation_id
        )
        root = _Root(span_id, client, conv, explicit)
        self.roots[span_id] = root
        return root

    def _lookup(self, span_id: str | None) -> _Span | None:
        if span_id is None:
            return None
        span = self.spans.get(span_id)
        if span is None:
            span = self.recent.get(span_id)
        return span

    def _release(self, root: _Root) -> None:
        root.live -= 1
        if root.live <= 0:
            self.roots.pop(root.id, None)

    # ---- spans --------------------------------------------------------------------------

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any,
        parent_id: str | None,
        tags: Mapping[str, Any] | None,
    ) -> None:
        with self.lock:
            parent = self._lookup(parent_id)
            if parent is None:
                root = self._new_root(id_, tags)
            else:
                root = parent.root
                root.live += 1
            span = _Span(id_, parent, root)
            self.spans[id_] = span
            if len(self.spans) > _SPANS_MAX:
                self._evict_oldest_span()
            if parent is None:
                root.span = span
            cls, meth = _method(id_)
            span.name = meth
            if meth == "run" and parent is None and _is_agent(instance):
                root.agent = True
                root.react = "ReActAgent" in _mro_names(instance)
                self._turn_starts(root)
            elif meth == "init_run" and root.react:
                # ReAct prompts carry the user's words among "Observation:" user turns,
                # so the turn's input comes from the workflow's start event instead
                user_msg = getattr(bound_args.arguments.get("ev"), "user_msg", None)
                text = user_msg if isinstance(user_msg, str) else _blocks_text(user_msg)[0]
                if text:
                    self._record(root, UserInput(root.conv, id_, text))
            elif meth in _CHAT_ENGINE_METHODS and parent is None and _is_chat_engine(instance):
                root.chat_engine = True
                self._turn_starts(root)
                message = bound_args.arguments.get("message")
                if isinstance(message, str):
                    self._record(root, UserInput(root.conv, id_, message))
                    # like a query: the last LLM call is the answer (condense steps are not)
                    root.query = _Query(id_, message)
                    root.live += 1
            elif meth in _CHAT_ENGINE_METHODS and hasattr(instance, "messages_to_prompt"):
                span.chat_messages = bound_args.arguments.get("messages")
            elif meth == "call_tool":
                ev = bound_args.arguments.get("ev")
                if ev is not None and hasattr(ev, "tool_name"):
                    span.tool = ev
                    span.started = now()
            elif meth in ("call", "acall") and hasattr(
                getattr(instance, "metadata", None), "fn_schema"
            ):
                inside_call_tool = False
                p = parent
                while p is not None:
                    if p.tool is not None:
                        inside_call_tool = True
                        break
                    p = p.parent
                if not inside_call_tool and span.llm is None:
                    span.tool = instance
                    span.tool_input = dict(bound_args.arguments.get("kwargs") or {}) or (
                        bound_args.arguments.get("args") or None
                    )
                    span.started = now()
            if self.capture_steps and tags and "llamaindex.step.input_event" in tags:
                span.step = True
                self._record(
                    root,
                    Step(
                        root.conv,
                        id_,
                        meth or cls,
                        "start",
                        kind="chain",
                        data={"input": tags.get("llamaindex.step.input_summary")},
                        parent_key=None,
                    ),
                )
            now_m = time.monotonic()
            root.touched = now_m
            if now_m - self.last_sweep > _SWEEP_EVERY:
                self.last_sweep = now_m
                self._sweep(now_m)

    def _evict_oldest_span(self) -> None:
        # dict order is insertion order: the first one is the oldest open span
        oldest = self.spans.pop(next(iter(self.spans)))
        self._release(oldest.root)
        if "span cap" not in self.errors:
            self.errors.add("span cap")
            log.warning(
                "gf_integrations: over %d LlamaIndex spans open; the oldest are forgotten",
                _SPANS_MAX,
            )

    def span_exit(self, id_: str, result: Any) -> None:
        with self.lock:
            span = self.spans.pop(id_, None)
            if span is None:
                return
            self._remember(span)
            root = span.root
            if span.tool is not None:
                self._tool_done(span, result, None)
            if span.step:
                self._record(root, Step(root.conv, id_, span.name, "end", kind="chain"))
            llm = span.llm
            if llm is not None and llm.owner == id_:
                llm.exited = True
                self._maybe_finish(llm)
            if root.react:
                if span.name == "run_agent_step":
                    self._react_step(root, id_, result)
                elif span is root.span:
                    self._react_final(root, result)
            q = root.query
            if q is not None and q.span_id == id_ and not q.ended:
                # QueryEndEvent did not come (custom engine): close the turn with the result
                self._query_end(root, q, result)
            if span is root.span and result is not None:
                # the Response / agent result the caller gets: gf.rate(result) rates it
                # (a workflow's StopEvent: the caller gets its .result, e.g. AgentOutput)
                ref = AnswerRef(root.conv, root.answer)
                _answers.put(result, ref)
                inner = getattr(result, "result", None)
                if inner is not None:
                    _answers.put(inner, ref)
            self._release(root)

    def span_drop(self, id_: str, err: BaseException | None) -> None:
        with self.lock:
            span = self.spans.pop(id_, None)
            if span is None:
                return
            self._remember(span)
            root = span.root
            if span.tool is not None:
                self._tool_done(span, None, err or "error")
            if span.step:
                self._record(root, Step(root.conv, id_, span.name, "error", kind="chain", data=err))
            llm = span.llm
            if llm is not None and not llm.finished:
                if llm.owner == id_:
                    llm.exited = True
                    llm.error = err or "error"
                    llm.open = 0
                    self._maybe_finish(llm)
                elif llm.open > 0 and err is not None and llm.error is None:
                    llm.error = err
            q = root.query
            if q is not None and q.span_id == id_ and not q.ended:
                q.ended = True
                self._emit_answer(root, q, None)  # an LLM error inside it, if any
            self._release(root)

    def _remember(self, span: _Span) -> None:
        self.recent[span.id] = span
        if len(self.recent) > _RECENT_MAX:
            self.recent.popitem(last=False)

    # ---- events -------------------------------------------------------------------------

    def handle(self, event: Any) -> None:
        fn = _DISPATCH.get(type(event).__name__)
        if fn is None:
            return
        with self.lock:
            span = self._lookup(event.span_id)
            if span is None:
                llm = self.pending.get(event.span_id or "")
                if llm is None:
                    return
                fn(self, event, None, llm)
                return
            fn(self, event, span, span.llm)

    def _owner(self, span: _Span) -> _LLM:
        """The LLM call an LLM start event belongs to (creating it for an outer span).

        An LLM span inside another one (chat -> complete for completion-only models,
        predict -> chat) feeds the outer call. So does a second call starting in the same
        root while a stream is still open: ``astream_chat`` of a chat engine re-enters
        ``stream_chat`` from the consumer's span, outside the first span's subtree.
        """
        if span.llm is not None:
            return span.llm
        root = span.root
        active = root.llm_active
        if active is not None and not active.finished:
            span.llm = active
            return active
        llm = _LLM(span.id, root, None)
        p: _Span | None = span
        while p is not None:
            if p.tool is not None:
                llm.silent = True  # inside a tool: its result is the observation
                break
            p = p.parent
        span.llm = llm
        root.llm_active = llm
        root.live += 1
        self._turn_starts(root)
        return llm

    def _turn_starts(self, root: _Root) -> None:
        if self.builds:
            self._flush_build(root.conv.key)

    def on_chat_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        llm = self._owner(span)
        llm.open += 1
        if not llm.kind:
            llm.kind = "chat"
        if llm.messages is None:
            llm.messages = list(ev.messages or ())
        if llm.model_dict is None:
            llm.model_dict = ev.model_dict

    def on_chat_progress(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is not None:
            llm.prior, llm.reply = llm.reply, ev.response

    def on_chat_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is None or llm.finished:
            return
        llm.open -= 1
        if ev.response is not None:
            llm.response = ev.response
        if llm.messages is None:
            llm.messages = list(ev.messages or ())
        self._maybe_finish(llm)

    def on_completion_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        llm = self._owner(span)
        llm.open += 1
        if not llm.kind:
            llm.kind = "completion"
            llm.prompt = ev.prompt
            llm.messages = _chat_messages_above(span)
        if llm.model_dict is None:
            llm.model_dict = ev.model_dict

    def on_completion_progress(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is not None and llm.kind != "chat":
            llm.prior, llm.reply = llm.reply, ev.response

    def on_completion_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is None or llm.finished:
            return
        llm.open -= 1
        if llm.kind != "chat" and ev.response is not None:
            llm.response = ev.response
        self._maybe_finish(llm)

    def on_predict_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        llm = self._owner(span)
        if not llm.kind:
            llm.kind = "predict"
            llm.template = ev.template
            llm.template_args = dict(ev.template_args or {})
            self._adopt_stream(llm)

    def on_predict_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is not None and isinstance(ev.output, str):
            llm.output = ev.output

    def on_exception(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is None or llm.finished:
            return
        llm.error = ev.exception
        llm.partial = True
        if span is None or span.id == llm.owner:
            llm.open = 0  # the outer stream was closed or failed: the call is over
        else:
            llm.open = max(0, llm.open - 1)
        if llm.open == 0:
            llm.exited = True
            self._maybe_finish(llm)

    def on_query_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None or llm is not None:
            return
        root = span.root
        if root.query is not None or root.agent:
            return  # a nested query (sub-question, query tool): part of the outer turn
        q = _Query(span.id, _query_text(ev.query))
        root.query = q
        root.live += 1
        if not root.chat_engine:
            self._record(root, UserInput(root.conv, span.id, q.text))

    def on_query_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        q = span.root.query
        if q is not None and q.span_id == span.id and not q.ended:
            self._query_end(span.root, q, ev.response)

    def on_retrieval_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None or llm is not None:
            return
        root = span.root
        nodes = list(ev.nodes or ())
        self._record(
            root,
            Retrieval(
                root.conv,
                span.id,
                _query_text(ev.str_or_query_bundle),
                documents=lambda: _documents(nodes),
                retriever=_method(span.id)[0] or None,
            ),
        )

    def on_embedding_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is not None:
            span.tool_input = ev.model_dict  # model for the end event
            span.started = now()

    def on_embedding_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        root = span.root
        chunks = ev.chunks or ()
        vectors = ev.embeddings or ()  # only the first vector's length is read
        dims = len(vectors[0]) if vectors and hasattr(vectors[0], "__len__") else None
        model = _model_name(span.tool_input)
        if _inside_retrieval(span):
            return  # the query vector of a search: its retrieval message tells the story
        if root.query is not None or root.agent or root.chat_engine:
            self._record(
                root,
                Embedding(
                    root.conv,
                    span.id,
                    model=model,
                    count=len(chunks),
                    dimensions=dims,
                    started_at=span.started,
                ),
            )
            return
        self._add_build(root, len(chunks), dims, model)

    # ---- LLM calls ------------------------------------------------------------------------

    def _maybe_finish(self, llm: _LLM) -> None:
        if llm.finished:
            return
        if not llm.exited or llm.open > 0:
            if llm.exited and llm.owner not in self.pending:
                self.pending[llm.owner] = llm  # a stream: wait for its end event
            return
        llm.finished = True
        self.pending.pop(llm.owner, None)
        root = llm.root
        if root.llm_active is llm:
            root.llm_active = None
        try:
            q = root.query
            if llm.silent:
                pass
            elif root.react:
                root.react_llm = llm  # mapped from the agent step's parsed output
            elif q is not None and not q.ended:
                q.last = llm
                q.llm_calls += 1
            elif q is not None and q.ended and q.last is None:
                q.last = llm
                self._emit_answer(root, q, None)
            else:
                self._emit_llm(root, llm)
                llm.drop_payload()
        finally:
            self._release(root)

    def _model(self, llm: _LLM) -> str | None:
        # the model that answered (the provider's response names the resolved snapshot,
        # e.g. gpt-4o-mini-2024-07-18) wins over the configured alias, as in the other
        # integrations
        name = _raw_model(llm.response) or _model_name(llm.model_dict)
        return name or (type(llm.instance).__name__ if llm.instance is not None else None)

    def _reply(self, llm: _LLM, native_id: str | None) -> tuple[Any, Any]:
        """(reply Lazy, text) for an LLM call."""
        resp = llm.response if llm.response is not None else llm.reply
        if llm.kind == "chat" or (llm.kind == "predict" and hasattr(resp, "message")):
            message = getattr(resp, "message", None)
            if message is None:
                return None, None

            def conv_chat() -> ChatMessage:
                m = _to_neutral(message)
                if native_id:
                    m["id"] = native_id
                return m

            return conv_chat, None
        text = llm.output
        if text is None and resp is not None:
            text = getattr(resp, "text", None)
        if text is None:
            return None, None
        reply: ChatMessage = {"role": "assistant", "content": str(text)}
        if native_id:
            reply["id"] = native_id
        return reply, text

    def _emit_llm(self, root: _Root, llm: _LLM) -> None:
        resp = llm.response
        inputs_are_user = True
        prompt = None
        if llm.template is not None:
            prompt = _template_prompt(llm.template, llm.template_args)
            args = llm.template_args or {}
            kwargs = getattr(llm.template, "kwargs", None) or {}
            query = args.get("query_str") or kwargs.get("query_str")
            inputs_are_user = False
            if isinstance(query, str) and not root.chat_engine and not root.agent:
                self._record(root, UserInput(root.conv, llm.owner, query))
        if root.chat_engine:
            inputs_are_user = False
        messages: Any = ()
        if llm.kind in ("chat", "completion") and llm.messages is not None:
            msgs = llm.messages
            messages = lambda: _convert_messages(msgs)  # noqa: E731
        elif llm.kind == "completion" and llm.prompt is not None:
            messages = ({"role": "user", "content": llm.prompt},)
        native = None if inputs_are_user else llm.owner
        reply, _ = self._reply(llm, native)
        self._record(
            root,
            LLMCall(
                root.conv,
                llm.owner,
                messages=messages,
                reply=reply,
                model=self._model(llm),
                usage=_usage_of(resp),
                finish_reason=llm.finish_reason(),
                started_at=llm.started_at,
                error=llm.error,
                partial=llm.partial and reply is not None,
                system_prompt=prompt,
                record_inputs=inputs_are_user,
            ),
        )

    # ---- query engines --------------------------------------------------------------------

    def _query_end(self, root: _Root, q: _Query, response: Any) -> None:
        q.ended = True
        # by type name: reading ``response_gen`` (a property on chat responses) is avoided,
        # a streaming response is never touched
        streaming = "Streaming" in type(response).__name__
        text = None if streaming else getattr(response, "response", None)
        if streaming and q.last is not None and q.last.reply is None:
            # a call that ended before the stream began and did not stream (a chat engine's
            # condense step) is not the answer: the answer is the stream, still to come.
            # (The stream itself may already be done: chat engines drain it on a thread.)
            q.last.drop_payload()
            q.last = None
        if streaming and q.last is None:
            # the answer is generated lazily when the caller consumes the stream: a chat
            # engine does it under its own root; a query engine often in a new root span,
            # so wait for an LLM call predicting this query (see _adopt_stream)
            if not root.chat_engine:
                self.awaiting[q.text] = (time.monotonic(), root, q)
                if len(self.awaiting) > _AWAIT_MAX:
                    self.awaiting.popitem(last=False)
            root.query = q
            return
        self._emit_answer(root, q, text)

    def _emit_answer(self, root: _Root, q: _Query, text: Any) -> None:
        llm = q.last
        if root.query is q:
            root.query = None
            self._release(root)
        if llm is None:
            if text is not None:
                self._record(root, FinalAnswer(root.conv, q.key, str(text)))
            return
        reply: Any
        if text is not None:
            reply = {"role": "assistant", "content": str(text), "id": q.key}
        else:
            reply, _ = self._reply(llm, q.key)
        prompt = (
            _template_prompt(llm.template, llm.template_args) if llm.template is not None else None
        )
        props = {"llmCalls": q.llm_calls} if q.llm_calls > 1 else None
        messages: Any = ()
        if prompt is None and llm.kind == "chat" and llm.messages is not None:
            msgs = llm.messages  # for the system prompt only (record_inputs=False)
            messages = lambda: _convert_messages(msgs)  # noqa: E731
        self._record(
            root,
            LLMCall(
                root.conv,
                q.key,
                messages=messages,
                reply=reply,
                model=self._model(llm),
                usage=_usage_of(llm.response),
                finish_reason=llm.finish_reason(),
                started_at=llm.started_at,
                error=llm.error,
                partial=llm.partial and reply is not None,
                system_prompt=prompt,
                final=not root.chat_engine,
                record_inputs=False,
                properties=props,
            ),
        )
        q.last = None
        llm.drop_payload()

    def _adopt_stream(self, llm: _LLM) -> None:
        """A predict call of a streaming query's answer, started after the query ended."""
        if not self.awaiting:
            return
        args = llm.template_args or {}
        kwargs = getattr(llm.template, "kwargs", None) or {}
        query = kwargs.get("query_str") or args.get("query_str")
        if not isinstance(query, str):
            return
        hit = self.awaiting.pop(query, None)
        if hit is None:
            return
        _, qroot, q = hit
        # move this call under the query's root: its conversation and its turn
        old = llm.root
        old.live -= 1
        if old.live <= 0:
            self.roots.pop(old.id, None)
        qroot.live += 1
        llm.root = qroot
        q.ended = True

    # ---- ReAct agents ---------------------------------------------------------------------------

    def _react_llm_call(self, root: _Root, key: str, reply: ChatMessage, final: bool) -> None:
        llm, root.react_llm = root.react_llm, None
        msgs = llm.messages if llm is not None and llm.messages is not None else []
        resp = llm.response if llm is not None else None
        self._record(
            root,
            LLMCall(
                root.conv,
                key,
                # inputs only for the system prompt: the rest is ReAct scaffolding
                messages=lambda: [m for m in _convert_messages(msgs) if m.get("role") == "system"],
                reply=reply,
                model=self._model(llm) if llm is not None else None,
                usage=_usage_of(resp),
                started_at=llm.started_at if llm is not None else None,
                record_inputs=False,
                final=final,
            ),
        )
        if llm is not None:
            llm.drop_payload()

    def _react_step(self, root: _Root, key: str, output: Any) -> None:
        """``run_agent_step`` of a ReActAgent ended: its parsed tool calls become tool_calls."""
        response = getattr(output, "response", None)
        text = _blocks_text(response)[0] if response is not None else None
        calls = getattr(output, "tool_calls", None) or []
        if not calls:
            root.react_text = text
            return
        specs: list[ToolCallSpec] = [
            {
                "id": getattr(c, "tool_id", None),
                "name": str(getattr(c, "tool_name", "") or "unknown_tool"),
                "arguments": getattr(c, "tool_kwargs", None),
            }
            for c in calls
        ]
        reply: ChatMessage = {
            "role": "assistant",
            "content": _react_thought(text),
            "tool_calls": specs,
            "id": key,
        }
        self._react_llm_call(root, key, reply, final=False)

    def _react_final(self, root: _Root, result: Any) -> None:
        raw = root.react_text
        if raw is None and root.react_llm is None:
            return
        answer = _agent_answer(result)
        if answer is None and raw is not None:
            answer = raw.split("Answer:", 1)[-1].strip()
        reply: ChatMessage = {"role": "assistant", "content": answer or "", "id": root.id}
        thought = _react_thought(raw)
        if thought:
            reply["reasoning"] = thought
        self._react_llm_call(root, root.id, reply, final=True)

    # ---- tools ------------------------------------------------------------------------------

    def _tool_done(self, span: _Span, result: Any, error: BaseException | str | None) -> None:
        root = span.root
        tool = span.tool
        span.tool = None
        if hasattr(tool, "tool_name"):  # workflow ToolCall event of call_tool
            name = str(tool.tool_name)
            call_id = getattr(tool, "tool_id", None) or None
            args = getattr(tool, "tool_kwargs", None)
        else:
            meta = getattr(tool, "metadata", None)
            name = str(getattr(meta, "name", None) or type(tool).__name__)
            call_id = None
            args = span.tool_input
        output: Any = None
        if result is not None:
            out = getattr(result, "tool_output", result)  # ToolCallResult -> ToolOutput
            if getattr(out, "is_error", False):
                exc = getattr(out, "exception", None)
                error = exc if isinstance(exc, BaseException) else str(_content(out))
            else:
                output = _content(out)
        self._record(
            root,
            ToolResult(
                root.conv,
                span.id,
                name,
                call_id,
                input=args,
                output=output,
                error=error,
                started_at=span.started,
            ),
        )

    # ---- embeddings outside turns -----------------------------------------------------------

    def _add_build(self, root: _Root, count: int, dims: int | None, model: str | None) -> None:
        if not root.explicit:
            return  # outside any conversation: an index build is not a conversation
        b = self.builds.get(root.conv.key)
        if b is None:
            b = self.builds[root.conv.key] = _Build(root.conv, root.client)
        b.count += count
        b.dims = b.dims or dims
        b.model = b.model or model
        b.touched = time.monotonic()

    def _flush_build(self, key: str | None = None) -> None:
        keys = [key] if key is not None else list(self.builds)
        for k in keys:
            b = self.builds.pop(k, None) if k is not None else None
            if b is None:
                continue
            b.client.record(
                Embedding(
                    b.conv,
                    b.key,
                    model=b.model,
                    count=b.count,
                    dimensions=b.dims,
                    started_at=b.first,
                    properties={"summary": "index build"},
                )
            )

    # ---- housekeeping -----------------------------------------------------------------------

    def _record(self, root: _Root, event: Event) -> None:
        root.touched = time.monotonic()
        if isinstance(event, (LLMCall, FinalAnswer)):
            root.answer = event.key
        root.client.record(event)

    def _sweep(self, now_m: float) -> None:
        """Close out abandoned streams, expire late-child links, send idle build summaries."""
        for sid, llm in list(self.pending.items()):
            if now_m - llm.touched > _PENDING_TTL:
                llm.partial = True
                llm.error = llm.error or "stream abandoned"
                llm.open = 0
                self._maybe_finish(llm)
                self.pending.pop(sid, None)
        for qtext, (t, root, q) in list(self.awaiting.items()):
            if now_m - t > _PENDING_TTL:
                self.awaiting.pop(qtext, None)
                self._emit_answer(root, q, None)
        for key, b in list(self.builds.items()):
            if now_m - b.touched > _BUILD_IDLE:
                self._flush_build(key)
        for sid, span in list(self.spans.items()):
            if now_m - span.root.touched > _SPAN_TTL:
                del self.spans[sid]  # never closed: its root goes just below
        for rid, root in list(self.roots.items()):
            if now_m - root.touched > _PENDING_TTL and now_m - root.started > _PENDING_TTL:
                if not any(s.root is root for s in self.spans.values()):
                    self.roots.pop(rid, None)

    def flush_pending(self) -> None:
        with self.lock:
            self._flush_build()

    def close_out(self) -> None:
        """At exit: send everything held back (build summaries, streams, answers) now."""
        # bounded: a thread stuck inside a handler must not hold up the exit
        if not self.lock.acquire(timeout=1.0):
            return
        try:
            self._sweep(float("inf"))
        finally:
            self.lock.release()

    def capture_active(self) -> bool:
        """True when the current context is inside an LLM call we record (or its stream)."""
        if not self.active:
            return False
        sid = active_span_id.get()
        with self.lock:
            if sid is None:
                # a top-level stream consumed by the caller's own thread, outside any span
                me = threading.get_ident()
                return any(
                    llm.thread == me
                    and (o := self._lookup(llm.owner)) is not None
                    and o.parent is None
                    for llm in self.pending.values()
                )
            span = self._lookup(sid)
            depth = 0
            while span is not None and depth < 64:
                if span.llm is not None and not span.llm.finished:
                    return True
                span = span.parent
                depth += 1
            # a stream consumed by the span that started it (agent step, chat engine)
            for llm in self.pending.values():
                owner = self._lookup(llm.owner)
                p = owner.parent if owner is not None else None
                if p is not None and _is_ancestor(p.id, self._lookup(sid)):
                    return True
        return False

    def state_sizes(self) -> dict[str, int]:
        """Sizes of the internal maps (for tests and the memory benchmark)."""
        with self.lock:
            return {
                "spans": len(self.spans),
                "roots": len(self.roots),
                "pending": len(self.pending),
                "awaiting": len(self.awaiting),
                "builds": len(self.builds),
                "recent": len(self.recent),
            }


def _react_thought(text: str | None) -> str | None:
    """The ``Thought:`` part of a ReAct step, without the Action/Answer lines."""
    if not text or "Thought:" not in text:
        return None  # a reply without the format is taken as the answer: no thought in it
    body = text.split("Thought:", 1)[-1]
    for marker in ("\nAction:", "\nAnswer:"):
        body = body.split(marker, 1)[0]
    return body.strip() or None


def _agent_answer(result: Any) -> str | None:
    """The answer text of a workflow agent's StopEvent / AgentOutput."""
    out = getattr(result, "result", result)
    response = out.get("response") if isinstance(out, Mapping) else getattr(out, "response", None)
    if isinstance(response, Mapping):
        texts = [b.get("text") for b in response.get("blocks") or () if isinstance(b, Mapping)]
        joined = "".join(t for t in texts if isinstance(t, str))
        return joined or (
            response.get("content") if isinstance(response.get("content"), str) else None
        )
    if response is not None:
        return _blocks_text(response)[0]
    return None


def _is_ancestor(ancestor_id: str, span: _Span | None) -> bool:
    depth = 0
    while span is not None and depth < 64:
        if span.id == ancestor_id:
            return True
        span = span.parent
        depth += 1
    return False


def _content(out: Any) -> Any:
    try:
        content = out.content
    except Exception:
        content = None
    if content is None:
        content = getattr(out, "raw_output", None)
    return content


def _tag(tags: Mapping[str, Any] | None, key: str) -> str | None:
    if not tags:
        return None
    v = tags.get(key)
    return str(v) if v else None


def _mro_names(instance: Any) -> set[str]:
    return {c.__name__ for c in type(instance).__mro__} if instance is not None else set()


def _is_agent(instance: Any) -> bool:
    names = _mro_names(instance)
    return bool(names & {"BaseWorkflowAgent", "AgentWorkflow", "BaseAgent", "AgentRunner"})


def _is_chat_engine(instance: Any) -> bool:
    return "BaseChatEngine" in _mro_names(instance)


_DISPATCH: dict[str, Any] = {
    "LLMChatStartEvent": _Engine.on_chat_start,
    "LLMChatInProgressEvent": _Engine.on_chat_progress,
    "LLMChatEndEvent": _Engine.on_chat_end,
    "LLMCompletionStartEvent": _Engine.on_completion_start,
    "LLMCompletionInProgressEvent": _Engine.on_completion_progress,
    "LLMCompletionEndEvent": _Engine.on_completion_end,
    "LLMPredictStartEvent": _Engine.on_predict_start,
    "LLMPredictEndEvent": _Engine.on_predict_end,
    "ExceptionEvent": _Engine.on_exception,
    "QueryStartEvent": _Engine.on_query_start,
    "QueryEndEvent": _Engine.on_query_end,
    "RetrievalEndEvent": _Engine.on_retrieval_end,
    "EmbeddingStartEvent": _Engine.on_embedding_start,
    "EmbeddingEndEvent": _Engine.on_embedding_end,
}


# -- handlers (pydantic models: state lives in a private attribute) ---------------------------


class _GFEventHandler(BaseEventHandler):
    _engine: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "GreenflashEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        engine: _Engine = self._engine
        try:
            engine.handle(event)
        except Exception as exc:
            _warn_once(engine.errors, "event " + type(event).__name__, exc)


class _GFSpanHandler(BaseSpanHandler[Any]):
    _engine: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "GreenflashSpanHandler"

    # The base class keeps every span in ``open_spans``; we keep our own slim state, so
    # these entry points are overridden directly.
    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        engine: _Engine = self._engine
        try:
            engine.span_enter(id_, bound_args, instance, parent_id, tags)
        except Exception as exc:
            _warn_once(engine.errors, "span_enter", exc)

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        engine: _Engine = self._engine
        try:
            engine.span_exit(id_, result)
        except Exception as exc:
            _warn_once(engine.errors, "span_exit", exc)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        engine: _Engine = self._engine
        try:
            engine.span_drop(id_, err)
        except Exception as exc:
            _warn_once(engine.errors, "span_drop", exc)

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


# -- public -------------------------------------------------------------------------------------

_install_lock = threading.Lock()
_installed: GreenflashInstrumentor | None = None


class GreenflashInstrumentor:
    """Record LlamaIndex LLM calls, queries, chat engines and agents to Greenflash.

    Attaches one event handler and one span handler to LlamaIndex's root instrumentation
    dispatcher (``llama_index.core.instrumentation.get_dispatcher()``), so everything in
    the process is covered; group work into conversations with
    ``gf_integrations.conversation(...)`` or ``instrument_tags({"gf.conversation_id": ...})``.

    Args:
        external_user_id: user when neither the scope nor the tags name one.
        external_conversation_id: conversation when neither the scope nor the tags name
            one (otherwise each root span is its own conversation).
        external_organization_id: organization default.
        product_id: Greenflash product id (else the client's configured one).
        properties: conversation properties added to every conversation.
        client: a :class:`~gf_integrations.GreenflashClient`; default: the configured client.
        capture_steps: also record workflow steps as ``chain_start``/``chain_end``.
    """

    def __init__(
        self,
        *,
        external_user_id: str | None = None,
        external_conversation_id: str | None = None,
        external_organization_id: str | None = None,
        product_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
        client: GreenflashClient | None = None,
        capture_steps: bool = False,
    ) -> None:
        self._engine = _Engine(
            IdentityDefaults(
                external_user_id=external_user_id,
                external_conversation_id=external_conversation_id,
                external_organization_id=external_organization_id,
                product_id=product_id,
                properties=properties,
            ),
            client,
            capture_steps,
        )
        self._event_handler: _GFEventHandler | None = None
        self._span_handler: _GFSpanHandler | None = None

    @property
    def is_instrumented(self) -> bool:
        """True while this instance's handlers are attached."""
        return self._event_handler is not None

    def instrument(self) -> GreenflashInstrumentor:
        """Attach to the root dispatcher. Idempotent process-wide: while any
        GreenflashInstrumentor is attached, a second call (from any instance) adds nothing."""
        global _installed
        with _install_lock:
            dispatcher = get_dispatcher()
            if _installed is not None or any(
                isinstance(h, _GFEventHandler) for h in dispatcher.event_handlers
            ):
                if _installed is not self:
                    log.info("gf_integrations: LlamaIndex is already instrumented; ignored")
                return self
            eh = _GFEventHandler()
            eh._engine = self._engine
            sh = _GFSpanHandler()
            sh._engine = self._engine
            self._engine.active = True
            dispatcher.add_event_handler(eh)
            dispatcher.add_span_handler(sh)
            self._event_handler, self._span_handler = eh, sh
            register_capture_probe(_probe)
            _installed = self
        return self

    def uninstrument(self) -> None:
        """Detach from the root dispatcher and send anything still pending."""
        global _installed
        with _install_lock:
            if self._event_handler is None:
                return
            dispatcher = get_dispatcher()
            eh, sh = self._event_handler, self._span_handler
            dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not eh]
            dispatcher.span_handlers = [h for h in dispatcher.span_handlers if h is not sh]
            self._event_handler = self._span_handler = None
            self._engine.active = False
            if _installed is self:
                _installed = None
        with contextlib.suppress(Exception):
            self._engine.flush_pending()

    def flush_pending(self) -> None:
        """Send summaries still held back (index-build embedding counts)."""
        self._engine.flush_pending()

    def _state_sizes(self) -> dict[str, int]:
        return self._engine.state_sizes()


def _close_out_at_exit() -> None:
    inst = _installed
    if inst is not None:
        with contextlib.suppress(Exception):
            inst._engine.close_out()


# atexit runs handlers last-registered first: this module imports the uploader (which
# registers the exit flush of every client) before this line, so what we hold back is
# recorded before that flush starts, and is sent within its budget.
atexit.register(_close_out_at_exit)


def _probe() -> bool:
    inst = _installed
    if inst is None:
        return False
    try:
        return inst._engine.capture_active()
    except Exception:
        return False


def _rating_target(target: Any) -> AnswerRef | None:
    """``gf.rate`` targets: the object a query, chat or agent run returned."""
    return _answers.get(target)


register_target_resolver(_rating_target)
