"""The public LangChain handler: one hook per callback, each guarded.

Hooks run on the caller's thread (see the package docstring and docs/DESIGN.md section 3):
they claim or pop the run in :mod:`.runs`, copy references into neutral events through
:mod:`.record`, and never raise into the host; our own failures are logged once per hook
and error type.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from ..client import get_client
from ..core.context import current_scope
from ..kit import FixedIdentity, IdentityKwargs, Unpack, identity_keywords, warn_once
from . import runs as _runs
from ._dispatch import ASYNC_LLM_START_CODE_IDS, inline_answer
from .convert import prompts_to_chats, text, to_chat, to_documents
from .record import (
    is_bubble_up,
    is_step,
    record_llm,
    record_retrieval,
    record_step_end,
    record_step_start,
    record_tool,
)
from .runs import (
    DEFAULT_TTL,
    ChainRun,
    LLMRun,
    RetrieverRun,
    Root,
    Run,
    ToolRun,
    active_llm,
    claim_tool_call,
    release_held,
    remember_tool_calls,
    runs,
    uuid_str,
)

if TYPE_CHECKING:
    from langchain_core.documents import Document as LCDocument
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult

log = logging.getLogger("gf_integrations")
RunT = TypeVar("RunT", bound=Run)


def _hook_failed(hook: str, exc: BaseException) -> None:
    """A bug of ours in a hook: logged once per (hook, exception type), never raised."""
    warn_once(
        ("langchain", hook, type(exc).__name__),
        "gf_integrations: LangChain %s failed; recording continues, further errors of this "
        "kind are not logged",
        hook,
        exc=exc,
    )


class GreenflashCallbackHandler(BaseCallbackHandler):
    """Records LangChain / LangGraph runs as Greenflash conversations.

    Attach per call (``config={"callbacks": [handler]}``), per component
    (``ChatX(callbacks=[handler])``) or globally with :func:`instrument`. One instance can
    serve any number of concurrent runs and conversations.

    Args:
        **identity: the identity keywords (:class:`~gf_integrations.kit.IdentityKwargs`):
            ``external_user_id``, ``external_conversation_id``,
            ``external_organization_id``, ``product_id``, ``properties`` and ``client`` (the
            :class:`~gf_integrations.GreenflashClient` to record through; default: the
            configured one, looked up at each root run). Without a
            conversation id, each root run is its own conversation (see the package
            docstring for LangChain's and LangGraph's own ids).
        capture_steps: also record chains and LangGraph nodes as ``chain_start`` /
            ``chain_end`` messages (internal runnables are skipped).
        run_ttl: seconds after which a run that never ended is forgotten.
    """

    raise_error = False

    @property
    def run_inline(self) -> bool:  # type: ignore[override]
        """True: hooks run on the caller's thread, in its context (see the package docstring).

        Except where langchain-core would then starve the other handlers of an event
        (see :mod:`gf_integrations.langchain._dispatch`).
        """
        caller = sys._getframe(1)
        if id(caller.f_code) not in ASYNC_LLM_START_CODE_IDS:
            return True
        try:
            return inline_answer(caller, GreenflashCallbackHandler)
        except Exception as exc:
            _hook_failed("run_inline", exc)
            return True

    def __init__(
        self,
        *,
        capture_steps: bool = False,
        run_ttl: float = DEFAULT_TTL,
        **identity: Unpack[IdentityKwargs],
    ) -> None:
        super().__init__()
        self.identity, self.client = identity_keywords("GreenflashCallbackHandler", identity)
        self.capture_steps = capture_steps
        self._fixed = FixedIdentity(self.identity)  # the common root's identity
        self.run_ttl = run_ttl
        self._last_root: int | None = None  # gf.rate(handler): its last root run

    def __repr__(self) -> str:
        return f"GreenflashCallbackHandler({self.identity!r}, capture_steps={self.capture_steps})"

    # -- run bookkeeping ---------------------------------------------------------------

    def _begin(
        self,
        kind: type[RunT],
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
    ) -> RunT | None:
        """Claim ``run_id`` (None when already claimed: a duplicate delivery)."""
        # keyed by the UUID's int: hashing a UUID object runs Python code, an int does not
        rid = run_id.int
        if rid in runs:
            return None
        parent = runs.get(parent_run_id.int) if parent_run_id is not None else None
        if parent is not None:
            run = kind(parent.root, parent.step)
        else:
            root = self._new_root(run_id, metadata)
            if root is None:
                return None
            self._last_root = rid
            run = kind(root, None)
        if runs.setdefault(rid, run, self.run_ttl) is not run:
            return None
        return run

    def _new_root(self, run_id: UUID, metadata: Mapping[str, Any] | None) -> Root | None:
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
            # the common case: only the handler's keywords and the client's defaults apply
            return Root(client, self._fixed.conv(client, uuid_str(run_id)), run_id)
        native_conv = md.get("greenflash_conversation_id") or md.get("thread_id")
        conv = client.resolve(
            defaults=self.identity,
            native_conversation_id=None if native_conv is None else str(native_conv),
            native_user_id=md.get("greenflash_user_id"),
            native_organization_id=md.get("greenflash_organization_id"),
            fallback_conversation_id=uuid_str(run_id),
        )
        return Root(client, conv, run_id)

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
            run = self._begin(LLMRun, run_id, parent_run_id, metadata)
            if run is None:
                return
            run.messages = messages[0] if messages else ()
            self._llm_params(run, serialized, metadata, kwargs.get("invocation_params"))
            active_llm.set(run_id.int)
        except Exception as exc:
            _hook_failed("on_chat_model_start", exc)

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
            run = self._begin(LLMRun, run_id, parent_run_id, metadata)
            if run is None:
                return
            run.messages = functools.partial(prompts_to_chats, list(prompts))
            self._llm_params(run, serialized, metadata, kwargs.get("invocation_params"))
            active_llm.set(run_id.int)
        except Exception as exc:
            _hook_failed("on_llm_start", exc)

    @staticmethod
    def _llm_params(
        run: LLMRun,
        serialized: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
    ) -> None:
        model = None
        if metadata:
            model = metadata.get("ls_model_name")
            run.provider = metadata.get("ls_provider")
        if not model and params:
            model = params.get("model") or params.get("model_name") or params.get("model_id")
        if not model and serialized:
            kw = serialized.get("kwargs")
            if isinstance(kw, Mapping):
                model = kw.get("model") or kw.get("model_name") or kw.get("model_id")
        run.model = model if isinstance(model, str) else None

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
            run = runs.pop(run_id.int)
            if type(run) is not LLMRun:
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
                    reply = functools.partial(to_chat, msg)
                    if not _runs.TOOL_IDS_AT_START:
                        calls = getattr(msg, "tool_calls", None)
                        if calls:
                            remember_tool_calls(run.root, calls)
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
            # UsageMetadata is LangChain's own shape; llm_output holds the provider's
            usage_kind = "langchain" if usage is not None else None
            out = response.llm_output
            if out:
                if usage is None:
                    usage = out.get("token_usage") or out.get("usage")
                model = model or out.get("model_name") or out.get("model")
            if not (model.__class__ is str and model):
                model = run.model
            record_llm(run, run_id.hex, model, reply, usage, finish, None, usage_kind)
        except Exception as exc:
            _hook_failed("on_llm_end", exc)

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
            run = runs.pop(run_id.int)
            if type(run) is not LLMRun:
                return
            reply: Any = None
            response = kwargs.get("response")
            gens = getattr(response, "generations", None)
            if gens and gens[0]:
                msg = getattr(gens[0][0], "message", None)
                if msg is not None and (msg.content or getattr(msg, "tool_calls", None)):
                    reply = functools.partial(to_chat, msg)
            record_llm(run, run_id.hex, run.model, reply, None, None, error)
        except Exception as exc:
            _hook_failed("on_llm_error", exc)

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
                parent = runs.get(parent_run_id.int)
                if parent is not None:
                    if run_type == "prompt" and serialized:
                        parent.root.prompt_template = (serialized, inputs)
                    return
            run = self._begin(ChainRun, run_id, parent_run_id, metadata)
            if run is None:
                return
            if run_type == "prompt" and serialized:
                run.root.prompt_template = (serialized, inputs)
            if self.capture_steps:
                name = kwargs.get("name") or (serialized or {}).get("name") or "chain"
                if parent_run_id is None or is_step(name, tags, metadata, run_type):
                    record_step_start(run, str(run_id), str(name), inputs, metadata)
        except Exception as exc:
            _hook_failed("on_chain_start", exc)

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
            run = runs.pop(run_id.int)
            if run is None:
                return
            if run.root.held_retrievals and run.root.run_id == run_id:
                release_held(run.root)
            if type(run) is ChainRun and run.name is not None:
                record_step_end(run, str(run_id), outputs, "end")
        except Exception as exc:
            _hook_failed("on_chain_end", exc)

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
            run = runs.pop(run_id.int)
            if run is None:
                return
            if run.root.held_retrievals and run.root.run_id == run_id:
                release_held(run.root)
            if type(run) is not ChainRun or run.name is None:
                return
            if is_bubble_up(error):
                record_step_end(run, str(run_id), {"interrupted": type(error).__name__}, "end")
            else:
                record_step_end(run, str(run_id), error, "error")
        except Exception as exc:
            _hook_failed("on_chain_error", exc)

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
            run = self._begin(ToolRun, run_id, parent_run_id, metadata)
            if run is None:
                return
            run.name = (serialized or {}).get("name") or kwargs.get("name")
            run.input = inputs if inputs is not None else input_str
            if "tool_call_id" in kwargs:
                run.tool_call_id = kwargs["tool_call_id"]
                _runs.TOOL_IDS_AT_START = True
            elif run.root.tool_calls:
                run.tool_call_id = claim_tool_call(run.root, run.name, inputs)
        except Exception as exc:
            _hook_failed("on_tool_start", exc)

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
            run = runs.pop(run_id.int)
            if type(run) is not ToolRun:
                return
            call_id = run.tool_call_id
            error = None
            if getattr(output, "type", None) == "tool":
                # invoked with a ToolCall: a ToolMessage; handle_tool_errors=True gives
                # status="error" with the error text as content
                call_id = call_id or getattr(output, "tool_call_id", None)
                content = text(output.content)
                if getattr(output, "status", None) == "error":
                    error = content
                output = content
            record_tool(run, run_id.hex, call_id, output, error)
        except Exception as exc:
            _hook_failed("on_tool_end", exc)

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
            run = runs.pop(run_id.int)
            if type(run) is not ToolRun or is_bubble_up(error):
                return
            call_id = run.tool_call_id or kwargs.get("tool_call_id")
            record_tool(run, run_id.hex, call_id, None, error)
        except Exception as exc:
            _hook_failed("on_tool_error", exc)

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
            run = self._begin(RetrieverRun, run_id, parent_run_id, metadata)
            if run is None:
                return
            run.query = query
            run.name = kwargs.get("name") or (serialized or {}).get("name")
        except Exception as exc:
            _hook_failed("on_retriever_start", exc)

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
            run = runs.pop(run_id.int)
            if type(run) is not RetrieverRun:
                return
            found = functools.partial(to_documents, list(documents))
            record_retrieval(run, run_id.hex, found, None)
        except Exception as exc:
            _hook_failed("on_retriever_end", exc)

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
            run = runs.pop(run_id.int)
            if type(run) is not RetrieverRun:
                return
            record_retrieval(run, run_id.hex, (), error)
        except Exception as exc:
            _hook_failed("on_retriever_error", exc)
