"""The public :class:`GreenflashInstrumentor` and the handlers it attaches to the dispatcher."""

from __future__ import annotations

import atexit
import contextlib
import inspect
import threading
from typing import Any

# re-exported (not marked as exported) by releases with llama-index-instrumentation
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from pydantic import PrivateAttr

from ..core.context import (
    register_capture_probe,
)
from ..core.targets import AnswerRef, register_target_resolver
from ..kit import IdentityKwargs, Unpack, identity_keywords, warn_once
from .engine import Engine
from .state import (
    _answers,
    log,
)


def _log_handler_error(where: str, exc: BaseException) -> None:
    """Our own failure in a handler: logged once per site, never raised into LlamaIndex."""
    warn_once(
        ("llamaindex handler", where),
        "gf_integrations: LlamaIndex handler error in %s (further ones are not logged)",
        where,
        exc=exc,
    )


# -- handlers (pydantic models: state lives in a private attribute) ---------------------------


class _GFEventHandler(BaseEventHandler):
    _engine: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "GreenflashEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        engine: Engine = self._engine
        try:
            engine.handle(event)
        except Exception as exc:
            _log_handler_error("event " + type(event).__name__, exc)


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
        engine: Engine = self._engine
        try:
            engine.span_enter(id_, bound_args, instance, parent_id, tags)
        except Exception as exc:
            _log_handler_error("span_enter", exc)

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        engine: Engine = self._engine
        try:
            engine.span_exit(id_, result)
        except Exception as exc:
            _log_handler_error("span_exit", exc)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        engine: Engine = self._engine
        try:
            engine.span_drop(id_, err)
        except Exception as exc:
            _log_handler_error("span_drop", exc)

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
        capture_steps: also record workflow steps as ``chain_start``/``chain_end``.
        **identity: the identity keywords (:class:`~gf_integrations.kit.IdentityKwargs`):
            ``external_user_id``, ``external_conversation_id``,
            ``external_organization_id``, ``product_id``, ``properties`` and ``client`` (the
            :class:`~gf_integrations.GreenflashClient` to record through; default: the
            configured one). Process-wide: they are defaults, below a
            ``gf_integrations.conversation(...)`` scope and the ``instrument_tags``; without
            a conversation id, each root span is its own conversation.
    """

    def __init__(
        self,
        *,
        capture_steps: bool = False,
        **identity: Unpack[IdentityKwargs],
    ) -> None:
        defaults, gf_client = identity_keywords("GreenflashInstrumentor", identity)
        self._engine = Engine(defaults, gf_client, capture_steps)
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
