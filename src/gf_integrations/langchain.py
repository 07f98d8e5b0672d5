"""LangChain and LangGraph: :class:`GreenflashCallbackHandler` and :func:`instrument`.

Usage::

    from gf_integrations.langchain import GreenflashCallbackHandler
    chain.invoke(x, config={"callbacks": [GreenflashCallbackHandler(external_user_id="u1")]})

    # or for everything that runs in this context (and its asyncio tasks / copies):
    from gf_integrations.langchain import instrument
    instrument(external_user_id="u1")

How it works (see DESIGN.md sections 3-4 for the mapping):

* One sync :class:`~langchain_core.callbacks.BaseCallbackHandler` (not ``BaseTracer``: a
  reused tracer keeps ~1 KB per invoke and costs several times more). It works under
  ``invoke``/``ainvoke``/``batch``/``stream``/``astream``/``astream_events``.
* ``run_inline = True``: under ``ainvoke`` LangChain would otherwise hop every callback
  onto an executor thread (a thread hand-off per event, costing more than our hooks) and
  run it in a *copy* of the context. Inline, the hooks run on the event-loop thread in
  the task's own context: they only copy references and enqueue (never block), the
  ``gf.conversation(...)`` scope read at the root run is the caller's, and the LLM-run
  marker below is visible to the code the model runs (not for an async completion LLM:
  langchain-core runs its start callbacks in ``asyncio.gather`` tasks). ``run_inline`` is
  a property, False only where langchain-core's async ``on_llm_start`` would otherwise
  starve the other handlers (see :mod:`gf_integrations._langchain_dispatch`).
* Hooks copy a few plain values and references to LangChain messages (immutable in
  practice) into neutral events; conversion to neutral dicts is deferred to the worker
  thread through :data:`~gf_integrations.core.events.Lazy` callables. Every hook is
  wrapped: nothing ever reaches the host; each error kind is logged once.
* Per-run state lives in one process-wide map keyed by run id (uuid7, unique), shared by
  every handler instance: a handler attached twice (constructor + config, or
  :func:`instrument` + config, even two different instances) sees the run already
  claimed and records it once. Entries are popped on end/error; a sweep drops runs that
  never end (abandoned streams, killed tasks) after ``run_ttl`` seconds, and the map is
  capped. Lookups never raise, so an unknown parent or run is simply a new root / ignored.
* A run whose parent no handler saw is a root. The conversation is resolved once per root,
  on the caller's context: handler arguments > ``gf.conversation(...)`` > metadata
  ``greenflash_conversation_id``/``greenflash_user_id``/``greenflash_organization_id`` >
  LangGraph ``thread_id`` > client defaults > one generated id per root run.
* Final answers: ``LLMCall.final`` is left to the recorder, which sends the reply that
  ends a turn that used tools as ``final_response`` and a plain chat reply as
  ``assistant`` (an agent that answers without tools is a plain chat turn).
* System prompt: a ``ChatPromptTemplate`` seen in the tree (prompt run's
  ``on_chain_start``: ``serialized`` holds the templates, ``inputs`` the variables) becomes
  components with ``{{var}}`` placeholders plus ``variables``, but only when the system
  text the model received is exactly that template's rendering; otherwise the recorder
  sends the SystemMessage text (LangGraph's ``prompt=`` string included).
* Retrievals that happen before the turn's first model call (RAG chains) are held until
  that call ends, so they are sent after the user message and their text lands in the
  answer's ``context``.
* LangGraph ``GraphInterrupt``/``GraphBubbleUp`` is not an error; a resume with the same
  ``thread_id`` lands in the same conversation (and resent history is deduplicated by the
  recorder through native message ids).
* Cross-integration dedup: while a chat/LLM run this handler records is in flight, a
  module ContextVar holds its run id (set in ``on_chat_model_start``/``on_llm_start``,
  which run inline in the model's own context for both sync and async calls). A capture
  probe registered with :func:`gf_integrations.core.context.register_capture_probe`
  answers True only if that run is still live in the run map, so a wrapped OpenAI client
  called by the model is not logged twice, while a stale marker (run already ended) or
  OpenAI calls made by plain chain steps still are. We did not use
  ``var_child_runnable_config``: it says a LangChain runnable is executing with our
  handler, not that one of our *LLM* runs is, and it is not set by a bare
  ``model.invoke``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import logging
import string
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tracers.context import register_configure_hook
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "gf_integrations.langchain needs langchain-core: pip install 'gf-integrations[langchain]'"
    ) from None

from ._langchain_dispatch import ASYNC_LLM_START_CODE_IDS, inline_answer
from .client import GreenflashClient, get_client
from .core.context import Conv, IdentityDefaults, current_scope, register_capture_probe
from .core.events import (
    ChatMessage,
    Document,
    LLMCall,
    PromptComponent,
    Retrieval,
    Step,
    SystemPrompt,
    ToolCallSpec,
    ToolResult,
)
from .core.targets import AnswerRef, BoundedMap, register_target_resolver

if TYPE_CHECKING:
    from langchain_core.documents import Document as LCDocument
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult

__all__ = ["GreenflashCallbackHandler", "instrument", "uninstrument"]

log = logging.getLogger("gf_integrations")

# -- process-wide run state ------------------------------------------------------------

_MAX_RUNS = 100_000
_SWEEP_EVERY = 1024  # run starts between two sweeps
_DEFAULT_TTL = 3600.0

_LLM, _CHAIN, _TOOL, _RETRIEVER = 1, 2, 3, 4


class _Root:
    """Per-root-run state shared by all runs of one tree."""

    __slots__ = ("client", "conv", "held", "llm_seen", "prompt", "run_id")

    def __init__(self, client: GreenflashClient, conv: Any, run_id: UUID) -> None:
        self.client = client
        self.conv = conv
        self.run_id = run_id
        self.llm_seen = False
        self.held: list[Retrieval] | None = None
        # (serialized ChatPromptTemplate, its inputs) from the last prompt run
        self.prompt: tuple[Mapping[str, Any], Any] | None = None


class _Run:
    __slots__ = (
        "a",
        "b",
        "c",
        "kind",
        "name",
        "owner",
        "root",
        "step",
        "t0",
    )

    def __init__(
        self, owner: GreenflashCallbackHandler, root: _Root, kind: int, step: str | None
    ) -> None:
        self.owner = owner
        self.root = root
        self.kind = kind
        self.step = step  # key of the nearest captured Step (own or ancestor's)
        self.t0 = time.time()  # one cheap clock read; a datetime only for recorded runs
        self.name: str | None = None
        # kind-specific slots: llm (messages, model, provider), tool (inputs, call id),
        # retriever (query)
        self.a: Any = None
        self.b: Any = None
        self.c: Any = None


_runs: dict[int, _Run] = {}
# root run id -> its latest answer (see core/targets.py)
_answers: BoundedMap[int, AnswerRef] = BoundedMap()
_sweep_lock = threading.Lock()
_sweep_counter = 0

# Marker of the chat/LLM run being recorded in this context (see module docstring).
_active_llm: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "gf_langchain_active_llm", default=None
)


def _llm_capture_probe() -> bool:
    rid = _active_llm.get()
    if rid is None:
        return False
    run = _runs.get(rid)
    return run is not None and run.kind == _LLM


register_capture_probe(_llm_capture_probe)


def _sweep(ttl: float) -> None:
    """Drop runs older than ``ttl`` seconds, and the oldest beyond the cap."""
    if not _sweep_lock.acquire(blocking=False):
        return
    try:
        cutoff = time.time() - ttl
        items = list(_runs.items())
        stale = [rid for rid, run in items if run.t0 < cutoff]
        overflow = len(items) - len(stale) - _MAX_RUNS
        if overflow > 0:
            # dict order is insertion order: the first ones are the oldest
            fresh = [rid for rid, run in items if run.t0 >= cutoff]
            stale.extend(fresh[:overflow])
        for rid in stale:
            _runs.pop(rid, None)
    finally:
        _sweep_lock.release()


def _uuid_str(u: UUID) -> str:
    """``str(uuid)``, about twice as fast (it is on the per-root path)."""
    h = u.hex
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _at(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


def run_state_size() -> int:
    """How many runs are currently tracked (for tests and leak checks)."""
    return len(_runs)


# -- error handling --------------------------------------------------------------------

_logged: set[tuple[str, str]] = set()


def _fail(hook: str, exc: BaseException) -> None:
    """Log a hook failure once per (hook, exception type); never raise."""
    try:
        key = (hook, type(exc).__name__)
        if key in _logged:
            return
        _logged.add(key)
        log.warning(
            "gf_integrations: LangChain %s failed (%s: %s); recording continues, "
            "further errors of this kind are not logged",
            hook,
            type(exc).__name__,
            exc,
        )
    except Exception:  # pragma: no cover - logging itself failed
        pass


def _is_bubble_up(error: BaseException) -> bool:
    """LangGraph control flow (interrupt(), Command parent jumps): not an error."""
    return any(c.__name__ == "GraphBubbleUp" for c in type(error).__mro__)


# -- conversion (worker thread) --------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") in (None, "text"):
                parts.append(str(block.get("text") or ""))
        return "".join(parts)
    return "" if content is None else str(content)


_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
    "AIMessageChunk": "assistant",
    "HumanMessageChunk": "user",
    "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool",
}


def _tool_calls(msg: Any) -> list[ToolCallSpec]:
    calls: list[ToolCallSpec] = []
    for tc in getattr(msg, "tool_calls", None) or ():
        calls.append(
            {"id": tc.get("id"), "name": tc.get("name") or "", "arguments": tc.get("args")}
        )
    for tc in getattr(msg, "invalid_tool_calls", None) or ():
        calls.append(
            {"id": tc.get("id"), "name": tc.get("name") or "", "arguments": tc.get("args")}
        )
    if not calls:
        # providers that only fill additional_kwargs (OpenAI raw format)
        extra = getattr(msg, "additional_kwargs", None) or {}
        for tc in extra.get("tool_calls") or ():
            fn = tc.get("function") or {}
            calls.append(
                {"id": tc.get("id"), "name": fn.get("name") or "", "arguments": fn.get("arguments")}
            )
    return calls


def _to_chat(msg: Any) -> ChatMessage:
    """One LangChain message as a neutral :class:`ChatMessage`."""
    mtype = getattr(msg, "type", None)
    role = _ROLES.get(mtype or "")
    if role is None:
        # ChatMessage(role=...) and unknown types
        raw = str(getattr(msg, "role", None) or "user")
        role = _ROLES.get(raw, raw)
        if role not in ("assistant", "user", "system", "tool"):
            role = "user"
    out: ChatMessage = {
        "role": role,
        "content": _text(getattr(msg, "content", None)),
        "id": getattr(msg, "id", None),
    }
    if role == "assistant":
        calls = _tool_calls(msg)
        if calls:
            out["tool_calls"] = calls
        extra = getattr(msg, "additional_kwargs", None) or {}
        reasoning = extra.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out["reasoning"] = reasoning
        refusal = extra.get("refusal")
        if isinstance(refusal, str) and refusal:
            out["refusal"] = refusal
    elif role == "tool":
        out["tool_call_id"] = getattr(msg, "tool_call_id", None)
        out["name"] = getattr(msg, "name", None)
        if getattr(msg, "status", None) == "error":
            out["status"] = "error"
    return out


def _to_chats(messages: Sequence[Any]) -> list[ChatMessage]:
    return [_to_chat(m) for m in messages]


def _prompts_to_chats(prompts: Sequence[str]) -> list[ChatMessage]:
    return [{"role": "user", "content": p} for p in prompts[:1]]


def _to_documents(documents: Sequence[LCDocument]) -> list[Document]:
    out: list[Document] = []
    for d in documents:
        md = getattr(d, "metadata", None) or {}
        score = None
        for key in ("score", "relevance_score", "similarity_score", "_score"):
            if isinstance(md.get(key), (int, float)):
                score = float(md[key])
                break
        doc_id = getattr(d, "id", None) or md.get("id") or md.get("doc_id") or md.get("source")
        out.append(
            {
                "id": None if doc_id is None else str(doc_id),
                "text": getattr(d, "page_content", None),
                "metadata": md,
                "score": score,
            }
        )
    return out


# -- prompt templates (host thread, cached per template object) ------------------------

_formatter = string.Formatter()
# id(serialized) -> (serialized, [(template, variables)]): the serialized dict is the
# prompt's cached ``_serialized``, so its id is stable while we hold the reference.
_template_cache: dict[int, tuple[Mapping[str, Any], list[tuple[str, list[str]]] | None]] = {}


def _system_templates(serialized: Mapping[str, Any]) -> list[tuple[str, list[str]]] | None:
    cached = _template_cache.get(id(serialized))
    if cached is not None and cached[0] is serialized:
        return cached[1]
    found: list[tuple[str, list[str]]] = []
    result: list[tuple[str, list[str]]] | None = found
    try:
        for m in (serialized.get("kwargs") or {}).get("messages") or ():
            ident = m.get("id") or ()
            if not ident or ident[-1] != "SystemMessagePromptTemplate":
                continue
            prompt = (m.get("kwargs") or {}).get("prompt") or {}
            pk = prompt.get("kwargs") or {}
            template = pk.get("template")
            if not isinstance(template, str) or pk.get("template_format", "f-string") != "f-string":
                result = None  # multimodal / mustache / jinja2: send the plain text
                break
            names = [f for _, f, _, _ in _formatter.parse(template) if f is not None]
            found.append((template, names))
    except Exception:
        result = None
    if len(_template_cache) > 256:
        _template_cache.clear()
    _template_cache[id(serialized)] = (serialized, result)
    return result or None


def _braces(template: str) -> str:
    """``{var}`` f-string placeholders as Greenflash ``{{var}}``; escaped braces unescaped."""
    out = []
    for literal, field, _spec, _conv in _formatter.parse(template):
        out.append(literal)
        if field is not None:
            out.append("{{" + field + "}}")
    return "".join(out)


def _template_prompt(
    prompt: tuple[Mapping[str, Any], Any], messages: Sequence[BaseMessage]
) -> SystemPrompt | None:
    """The system prompt as components + variables when it is exactly the template's output.

    Cached per (template, system text the model received): the same prompt rendered
    with the same variables is the common case on the hot path.
    """
    serialized, inputs = prompt
    texts = [m.content for m in messages if m.type == "system"]
    actual = texts[0] if len(texts) == 1 and texts[0].__class__ is str else None
    if actual is None:
        actual = "\n\n".join(t for t in map(_text, texts) if t)
    key = (id(serialized), actual)
    cached = _render_cache.get(key)
    if cached is not None and cached[0] is serialized:
        return cached[1]
    result = _render_template(serialized, inputs, actual)
    if len(_render_cache) >= 512:
        _render_cache.clear()
    _render_cache[key] = (serialized, result)
    return result


def _render_template(
    serialized: Mapping[str, Any], inputs: Any, actual: str
) -> SystemPrompt | None:
    templates = _system_templates(serialized)
    if not templates or not isinstance(inputs, Mapping):
        return None
    partials = (serialized.get("kwargs") or {}).get("partial_variables") or {}
    variables: dict[str, str] = {}
    for _template, names in templates:
        for n in names:
            v = inputs[n] if n in inputs else partials.get(n)
            if v is None:
                return None
            variables[n] = v if isinstance(v, str) else str(v)
    rendered = "\n\n".join(t for t in (tpl.format(**variables) for tpl, _n in templates) if t)
    # only when the model really received the template's rendering (a later, different
    # prompt in the same tree, or a system message built elsewhere, falls back to text)
    if rendered != actual:
        return None
    components: list[PromptComponent] = [
        {"content": _braces(t), "type": "system", "source": "customer", "is_dynamic": bool(n)}
        for t, n in templates
    ]
    return SystemPrompt(components=components, variables=variables or None)


_render_cache: dict[tuple[int, str], tuple[Mapping[str, Any], SystemPrompt | None]] = {}


# -- the handler -----------------------------------------------------------------------

_INTERNAL_CHAINS = frozenset(
    {
        "RunnableSequence",
        "RunnableParallel",
        "RunnableLambda",
        "RunnablePassthrough",
        "RunnableAssign",
        "RunnablePick",
        "RunnableBranch",
        "RunnableWithFallbacks",
        "RunnableEach",
        "RunnableBinding",
        "RunnableCallable",
        "RunnableWithMessageHistory",
        "ChannelWrite",
        "ChannelRead",
        "Prompt",
        "call_model",
        "acall_model",
        "should_continue",
        "insert_history",
        "load_history",
        "check_sync_or_async",
    }
)


class GreenflashCallbackHandler(BaseCallbackHandler):
    """Records LangChain / LangGraph runs as Greenflash conversations.

    Attach per call (``config={"callbacks": [handler]}``), per component
    (``ChatX(callbacks=[handler])``) or globally with :func:`instrument`. One instance can
    serve any number of concurrent runs and conversations.

    Args:
        external_user_id: user for every conversation recorded by this handler.
        external_conversation_id: fixed conversation id (else see the module docstring).
        external_organization_id: organization for every conversation.
        product_id: Greenflash product id (else the client's).
        properties: conversation-level properties.
        client: the :class:`~gf_integrations.GreenflashClient` to record through (default:
            the configured default client, looked up at each root run).
        capture_steps: also record chains and LangGraph nodes as ``chain_start`` /
            ``chain_end`` messages (internal runnables are skipped).
        run_ttl: seconds after which a run that never ended is forgotten.
    """

    raise_error = False

    @property
    def run_inline(self) -> bool:  # type: ignore[override]
        """True: hooks run on the caller's thread, in its context (see module docstring).

        Except where langchain-core would then starve the other handlers of an event
        (see :mod:`gf_integrations._langchain_dispatch`).
        """
        caller = sys._getframe(1)
        if id(caller.f_code) not in ASYNC_LLM_START_CODE_IDS:
            return True
        try:
            return inline_answer(caller, GreenflashCallbackHandler)
        except Exception as exc:
            _fail("run_inline", exc)
            return True

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
        run_ttl: float = _DEFAULT_TTL,
    ) -> None:
        super().__init__()
        self.identity = IdentityDefaults(
            external_user_id=external_user_id,
            external_conversation_id=external_conversation_id,
            external_organization_id=external_organization_id,
            product_id=product_id,
            properties=dict(properties) if properties else None,
        )
        self.client = client
        self.capture_steps = capture_steps
        self._base: tuple[GreenflashClient, Conv] | None = None
        self.run_ttl = run_ttl
        self._last_root: int | None = None  # gf.rate(handler): its last root run

    def __repr__(self) -> str:
        return f"GreenflashCallbackHandler({self.identity!r}, capture_steps={self.capture_steps})"

    # -- run bookkeeping ---------------------------------------------------------------

    def _begin(
        self,
        kind: int,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
    ) -> _Run | None:
        """Claim ``run_id`` (None when already claimed: a duplicate delivery)."""
        global _sweep_counter
        # keyed by the UUID's int: hashing a UUID object runs Python code, an int does not
        rid = run_id.int
        if rid in _runs:
            return None
        parent = _runs.get(parent_run_id.int) if parent_run_id is not None else None
        if parent is not None:
            run = _Run(self, parent.root, kind, parent.step)
        else:
            root = self._new_root(run_id, metadata)
            if root is None:
                return None
            self._last_root = rid
            run = _Run(self, root, kind, None)
        if _runs.setdefault(rid, run) is not run:
            return None
        _sweep_counter += 1
        if _sweep_counter >= _SWEEP_EVERY:
            _sweep_counter = 0
            _sweep(self.run_ttl)
        return run

    def _new_root(self, run_id: UUID, metadata: Mapping[str, Any] | None) -> _Root | None:
        client = self.client or get_client()
        if not client.active:
            return None
        md = metadata or {}
        if current_scope() is None and not (
            "thread_id" in md
            or "greenflash_conversation_id" in md
            or "greenflash_user_id" in md
            or "greenflash_organization_id" in md
        ):
            # common case: only handler args and client defaults apply; they do not
            # change, so resolve them once per client and only vary the generated id
            base = self._base
            if base is None or base[0] is not client:
                base = self._base = (client, client.resolve(defaults=self.identity))
            proto = base[1]
            if self.identity.external_conversation_id:
                return _Root(client, proto, run_id)
            conv = Conv(
                _uuid_str(run_id),
                proto.external_user_id,
                proto.external_organization_id,
                proto.product_id,
                proto.properties,
                proto.force_sample,
            )
            return _Root(client, conv, run_id)
        native_conv = md.get("greenflash_conversation_id") or md.get("thread_id")
        conv = client.resolve(
            defaults=self.identity,
            native_conversation_id=None if native_conv is None else str(native_conv),
            native_user_id=md.get("greenflash_user_id"),
            native_organization_id=md.get("greenflash_organization_id"),
            fallback_conversation_id=_uuid_str(run_id),
        )
        return _Root(client, conv, run_id)

    # -- chat models and LLMs ------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Remember the prompt of a chat model call (recorded at its end)."""
        try:
            run = self._begin(_LLM, run_id, parent_run_id, metadata)
            if run is None:
                return
            run.a = messages[0] if messages else ()
            self._llm_params(run, serialized, metadata, kwargs.get("invocation_params"))
            _active_llm.set(run_id.int)
        except Exception as exc:
            _fail("on_chat_model_start", exc)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Remember the prompt of a completion-style LLM call."""
        try:
            run = self._begin(_LLM, run_id, parent_run_id, metadata)
            if run is None:
                return
            run.a = functools.partial(_prompts_to_chats, list(prompts))
            self._llm_params(run, serialized, metadata, kwargs.get("invocation_params"))
            _active_llm.set(run_id.int)
        except Exception as exc:
            _fail("on_llm_start", exc)

    @staticmethod
    def _llm_params(
        run: _Run,
        serialized: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
    ) -> None:
        model = None
        if metadata:
            model = metadata.get("ls_model_name")
            run.c = metadata.get("ls_provider")
        if not model and params:
            model = params.get("model") or params.get("model_name") or params.get("model_id")
        if not model and serialized:
            kw = serialized.get("kwargs")
            if isinstance(kw, Mapping):
                model = kw.get("model") or kw.get("model_name") or kw.get("model_id")
        run.b = model if isinstance(model, str) else None

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Record the call: new history messages, then the reply."""
        try:
            run = _runs.pop(run_id.int, None)
            if run is None or run.kind != _LLM:
                return
            gens = response.generations
            gen = gens[0][0] if gens and gens[0] else None
            # the model that answered (the API's resolved name, e.g. a dated snapshot)
            # wins over the requested alias, as in wrap_openai and LlamaIndex
            model: Any = None
            usage = finish = None
            reply: Any = None
            if gen is not None:
                msg = getattr(gen, "message", None)
                info = gen.generation_info
                if msg is not None:
                    reply = functools.partial(_to_chat, msg)
                    usage = getattr(msg, "usage_metadata", None)
                    rm = msg.response_metadata
                    if rm:
                        finish = rm.get("finish_reason") or rm.get("stop_reason")
                        if not finish and rm.get("object") == "response":
                            finish = rm.get("status")  # OpenAI Responses: as wrap_openai
                        model = rm.get("model_name") or rm.get("model")
                else:
                    reply = {"role": "assistant", "content": gen.text}
                if info:
                    finish = finish or info.get("finish_reason")
                    model = model or info.get("model_name")
            out = response.llm_output
            if out:
                if usage is None:
                    usage = out.get("token_usage") or out.get("usage")
                model = model or out.get("model_name") or out.get("model")
            if not (model.__class__ is str and model):
                model = run.b
            self._record_llm(run, run_id.hex, model, reply, usage, finish, None)
        except Exception as exc:
            _fail("on_llm_end", exc)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Record a failed (or abandoned, then partial) call."""
        try:
            run = _runs.pop(run_id.int, None)
            if run is None or run.kind != _LLM:
                return
            reply: Any = None
            response = kwargs.get("response")
            gens = getattr(response, "generations", None)
            if gens and gens[0]:
                msg = getattr(gens[0][0], "message", None)
                if msg is not None and (msg.content or getattr(msg, "tool_calls", None)):
                    reply = functools.partial(_to_chat, msg)
            self._record_llm(run, run_id.hex, run.b, reply, None, None, error)
        except Exception as exc:
            _fail("on_llm_error", exc)

    def _record_llm(
        self,
        run: _Run,
        key: str,
        model: Any,
        reply: Any,
        usage: Any,
        finish: Any,
        error: BaseException | None,
    ) -> None:
        root = run.root
        messages = run.a
        system_prompt = None
        if root.prompt is not None and isinstance(messages, list):
            system_prompt = _template_prompt(root.prompt, messages)
        if isinstance(messages, list):
            messages = functools.partial(_to_chats, messages)
        partial = error is not None and reply is not None
        if isinstance(error, GeneratorExit) or type(error).__name__ == "CancelledError":
            # abandoned stream / cancelled task: keep what was said, not an error
            partial, error = True, None
        held = root.held
        if held:
            # retrievals made before the turn's user message was known (RAG chains):
            # emit the history first, then the retrievals, then the reply, so that the
            # retrieved text lands in the reply's context
            root.held = None
            root.client.record(LLMCall(conv=root.conv, key=key, messages=messages or ()))
            for ev in held:
                root.client.record(ev)
        root.llm_seen = True
        if reply is not None:  # the root's answer so far: gf.rate(run_id) rates it
            _answers.put(root.run_id.int, AnswerRef(root.conv, key))
        root.client.record(
            LLMCall(
                conv=root.conv,
                key=key,
                messages=messages or (),
                reply=reply,
                model=model if model.__class__ is str else None,
                usage=usage if usage is not None and isinstance(usage, Mapping) else None,
                provider=run.c,
                finish_reason=finish if finish.__class__ is str else None,
                started_at=_at(run.t0),
                error=error,
                partial=partial,
                system_prompt=system_prompt,
            )
        )

    # -- chains, prompts, LangGraph nodes ------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Track the run tree; remember prompt templates; optionally record steps."""
        try:
            run_type = kwargs.get("run_type")
            if parent_run_id is not None and run_type is not None:
                # prompt / parser runs have no children we care about: not tracked
                parent = _runs.get(parent_run_id.int)
                if parent is not None:
                    if run_type == "prompt" and serialized:
                        parent.root.prompt = (serialized, inputs)
                    return
            run = self._begin(_CHAIN, run_id, parent_run_id, metadata)
            if run is None:
                return
            if run_type == "prompt" and serialized:
                run.root.prompt = (serialized, inputs)
            if self.capture_steps:
                name = kwargs.get("name") or (serialized or {}).get("name") or "chain"
                if parent_run_id is None or _is_step(name, tags, metadata, run_type):
                    key = str(run_id)
                    run.root.client.record(
                        Step(
                            run.root.conv,
                            key,
                            str(name),
                            "start",
                            data=dict(inputs) if isinstance(inputs, Mapping) else inputs,
                            parent_key=run.step,
                            properties=_step_props(metadata),
                        )
                    )
                    run.name = str(name)
                    run.step, run.a = key, run.step  # own key for children; parent's kept
        except Exception as exc:
            _fail("on_chain_start", exc)

    def on_chain_end(
        self,
        outputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        """Free the run; record the step end when captured."""
        try:
            run = _runs.pop(run_id.int, None)
            if run is None:
                return
            if run.root.held and run.root.run_id == run_id:
                _release_held(run.root)
            if run.name is None:
                return
            run.root.client.record(
                Step(run.root.conv, str(run_id), run.name, "end", data=outputs, parent_key=run.a)
            )
        except Exception as exc:
            _fail("on_chain_end", exc)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        """Free the run; an interrupt ends a captured step normally."""
        try:
            run = _runs.pop(run_id.int, None)
            if run is None:
                return
            if run.root.held and run.root.run_id == run_id:
                _release_held(run.root)
            if run.name is None:
                return
            interrupted = _is_bubble_up(error)
            run.root.client.record(
                Step(
                    run.root.conv,
                    str(run_id),
                    run.name,
                    "end" if interrupted else "error",
                    data={"interrupted": type(error).__name__} if interrupted else error,
                    parent_key=run.a,
                )
            )
        except Exception as exc:
            _fail("on_chain_error", exc)

    # -- tools -------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Remember the tool's name, arguments and tool_call_id."""
        try:
            run = self._begin(_TOOL, run_id, parent_run_id, metadata)
            if run is None:
                return
            run.name = (serialized or {}).get("name") or kwargs.get("name")
            run.a = inputs if inputs is not None else input_str
            run.b = kwargs.get("tool_call_id")
        except Exception as exc:
            _fail("on_tool_start", exc)

    def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        """Record an observation (or a tool_error for an error ToolMessage)."""
        try:
            run = _runs.pop(run_id.int, None)
            if run is None or run.kind != _TOOL:
                return
            call_id = run.b
            error = None
            if getattr(output, "type", None) == "tool":
                # invoked with a ToolCall: a ToolMessage; handle_tool_errors=True gives
                # status="error" with the error text as content
                call_id = call_id or getattr(output, "tool_call_id", None)
                content = _text(output.content)
                if getattr(output, "status", None) == "error":
                    error = content
                output = content
            self._record_tool(run, run_id.hex, call_id, output, error)
        except Exception as exc:
            _fail("on_tool_end", exc)

    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        """Record a tool_error (an interrupt raised inside a tool is not one)."""
        try:
            run = _runs.pop(run_id.int, None)
            if run is None or run.kind != _TOOL or _is_bubble_up(error):
                return
            self._record_tool(run, run_id.hex, run.b or kwargs.get("tool_call_id"), None, error)
        except Exception as exc:
            _fail("on_tool_error", exc)

    @staticmethod
    def _record_tool(run: _Run, key: str, call_id: Any, output: Any, error: Any) -> None:
        root = run.root
        root.client.record(
            ToolResult(
                root.conv,
                key,
                run.name,
                call_id if isinstance(call_id, str) else None,
                input=run.a,
                output=output,
                error=error,
                started_at=_at(run.t0),
            )
        )

    # -- retrievers --------------------------------------------------------------------

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Remember the query."""
        try:
            run = self._begin(_RETRIEVER, run_id, parent_run_id, metadata)
            if run is None:
                return
            run.a = query
            run.name = kwargs.get("name") or (serialized or {}).get("name")
        except Exception as exc:
            _fail("on_retriever_start", exc)

    def on_retriever_end(
        self,
        documents: Sequence[LCDocument],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        """Record the retrieval; its text becomes the next answer's context."""
        try:
            run = _runs.pop(run_id.int, None)
            if run is None or run.kind != _RETRIEVER:
                return
            self._record_retrieval(
                run, run_id.hex, functools.partial(_to_documents, list(documents)), None
            )
        except Exception as exc:
            _fail("on_retriever_end", exc)

    def on_retriever_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        """Record a failed retrieval."""
        try:
            run = _runs.pop(run_id.int, None)
            if run is None or run.kind != _RETRIEVER:
                return
            self._record_retrieval(run, run_id.hex, (), error)
        except Exception as exc:
            _fail("on_retriever_error", exc)

    @staticmethod
    def _record_retrieval(run: _Run, key: str, documents: Any, error: BaseException | None) -> None:
        root = run.root
        event = Retrieval(
            root.conv,
            key,
            run.a,
            documents,
            retriever=run.name,
            started_at=_at(run.t0),
            error=error,
        )
        if root.llm_seen or root.run_id.hex == key:
            root.client.record(event)
        else:
            # no model call yet in this root: the user message is unknown, hold it
            # (see _record_llm); released at the root's end if no model call comes
            root.held = [*(root.held or ()), event]


def _release_held(root: _Root) -> None:
    held, root.held = root.held, None
    for ev in held or ():
        root.client.record(ev)


def _is_step(
    name: Any, tags: list[str] | None, metadata: Mapping[str, Any] | None, run_type: Any
) -> bool:
    """Whether a non-root chain run is a meaningful step (user chain or LangGraph node)."""
    if run_type in ("prompt", "parser"):
        return False
    node = metadata.get("langgraph_node") if metadata else None
    if node is not None:
        # a graph node run carries a graph:step:N tag; runnables inside a node do not
        return name == node and any(t.startswith("graph:step:") for t in tags or ())
    return name not in _INTERNAL_CHAINS


def _step_props(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not metadata:
        return None
    props = {k: metadata[k] for k in ("langgraph_node", "langgraph_step") if k in metadata}
    return props or None


# -- global registration ---------------------------------------------------------------

_hook_var: contextvars.ContextVar[GreenflashCallbackHandler | None] = contextvars.ContextVar(
    "gf_langchain_handler", default=None
)
_hook_lock = threading.Lock()
_hook_registered = False


def instrument(
    *,
    external_user_id: str | None = None,
    external_conversation_id: str | None = None,
    external_organization_id: str | None = None,
    product_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    client: GreenflashClient | None = None,
    capture_steps: bool = False,
) -> GreenflashCallbackHandler:
    """Record every LangChain/LangGraph run started in this context, without passing callbacks.

    Uses langchain-core's ``register_configure_hook`` with a ContextVar: the handler is
    seen by runs started in the current context and in contexts copied from it (asyncio
    tasks, LangChain's executors). A thread started with a plain ``threading.Thread``
    before or without copying the context does not see it: call :func:`instrument` there
    too, or pass the handler in ``config``. Idempotent: calling it again with the same
    arguments returns the installed handler. Returns the handler.
    """
    global _hook_registered
    with _hook_lock:
        if not _hook_registered:
            register_configure_hook(_hook_var, inheritable=True)
            _hook_registered = True
    current = _hook_var.get()
    identity = IdentityDefaults(
        external_user_id=external_user_id,
        external_conversation_id=external_conversation_id,
        external_organization_id=external_organization_id,
        product_id=product_id,
        properties=dict(properties) if properties else None,
    )
    if (
        current is not None
        and current.identity == identity
        and current.client is client
        and current.capture_steps == capture_steps
    ):
        return current
    handler = GreenflashCallbackHandler(
        external_user_id=external_user_id,
        external_conversation_id=external_conversation_id,
        external_organization_id=external_organization_id,
        product_id=product_id,
        properties=properties,
        client=client,
        capture_steps=capture_steps,
    )
    _hook_var.set(handler)
    return handler


def uninstrument() -> None:
    """Stop the handler installed by :func:`instrument` (in this context)."""
    _hook_var.set(None)


def _rating_target(target: Any) -> AnswerRef | None:
    """``gf.rate`` targets: a root run id (the ``run_id`` of an invoke's config, as a UUID
    or a string) or a handler (its last root run)."""
    if isinstance(target, GreenflashCallbackHandler):
        rid = target._last_root
        return None if rid is None else _answers.get(rid)
    if isinstance(target, UUID):
        return _answers.get(target.int)
    if isinstance(target, str):
        try:
            return _answers.get(UUID(target).int)
        except ValueError:
            return None
    return None


register_target_resolver(_rating_target)
