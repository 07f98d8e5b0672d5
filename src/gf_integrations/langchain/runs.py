"""Run state of the LangChain handler: one process-wide registry of open runs.

Keyed by the run id's int (uuid7, unique; hashing an int runs no Python code), shared by
every handler instance, so a handler attached twice sees a run already claimed and records
it once. Entries are popped at the run's end or error; the registry's sweep (see
:class:`~gf_integrations.kit.RunRegistry`) forgets runs that never end (abandoned
streams, killed tasks) after the handler's ``run_ttl`` and keeps the count capped.
Lookups never raise: an unknown parent makes a new root, an unknown run is ignored.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..core.context import Conv
from ..core.events import Retrieval
from ..core.targets import AnswerMap
from ..kit import RunRegistry, register_capture_probe

if TYPE_CHECKING:
    from ..client import GreenflashClient

MAX_RUNS = 100_000
DEFAULT_TTL = 3600.0
SWEEP_EVERY = 2.0  # seconds between two time-to-live sweeps


class Root:
    """State shared by all runs of one tree (one root run)."""

    __slots__ = (
        "client",
        "conv",
        "held_retrievals",
        "llm_seen",
        "prompt_template",
        "run_id",
        "tool_calls",
    )

    def __init__(self, client: GreenflashClient, conv: Conv, run_id: UUID) -> None:
        self.client = client
        self.conv = conv
        self.run_id = run_id
        self.llm_seen = False  # a model call of this tree was recorded
        # retrievals made before the tree's first model call (sent after its history)
        self.held_retrievals: list[Retrieval] | None = None
        # (serialized ChatPromptTemplate, its inputs) from the tree's last prompt run
        self.prompt_template: tuple[Mapping[str, Any], Any] | None = None
        # (name, args, id) of the tool calls the tree's models asked for and no tool run
        # claimed yet: see claim_tool_call
        self.tool_calls: list[tuple[Any, Any, str]] | None = None


class Run:
    """One open run. ``step`` is the key of the nearest recorded Step (own or ancestor's)."""

    __slots__ = ("name", "root", "step", "t0")

    def __init__(self, root: Root, step: str | None) -> None:
        self.root = root
        self.step = step
        self.t0 = time.time()  # one cheap clock read; a datetime only for recorded runs
        self.name: str | None = None


class LLMRun(Run):
    """A chat model or completion LLM call, recorded at its end."""

    __slots__ = ("messages", "model", "provider")

    def __init__(self, root: Root, step: str | None) -> None:
        super().__init__(root, step)
        # the prompt: LangChain messages, or a callable producing neutral ones
        self.messages: Any = None
        self.model: str | None = None  # the requested model (the reply's name wins)
        self.provider: Any = None


class ChainRun(Run):
    """A chain, prompt or LangGraph node; ``name`` is set only when recorded as a Step."""

    __slots__ = ("parent_step",)

    def __init__(self, root: Root, step: str | None) -> None:
        super().__init__(root, step)
        self.parent_step: str | None = None  # the parent's step key, for this Step's end


class ToolRun(Run):
    """A tool call; ``name`` is the tool's."""

    __slots__ = ("input", "tool_call_id")

    def __init__(self, root: Root, step: str | None) -> None:
        super().__init__(root, step)
        self.input: Any = None
        self.tool_call_id: Any = None


class RetrieverRun(Run):
    """A retriever call; ``name`` is the retriever's."""

    __slots__ = ("query",)

    def __init__(self, root: Root, step: str | None) -> None:
        super().__init__(root, step)
        self.query: Any = None


def _started(run: Run) -> float:
    return run.t0


runs: RunRegistry[int, Run] = RunRegistry(
    cap=MAX_RUNS, ttl=DEFAULT_TTL, stamp=_started, clock=time.time, sweep_every=SWEEP_EVERY
)

# root run id -> its latest answer, for gf.rate (see core/targets.py)
answers: AnswerMap[int] = AnswerMap()

# The chat/LLM run being recorded in this context (see the package docstring).
active_llm: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "gf_langchain_active_llm", default=None
)


def _llm_capture_probe() -> bool:
    rid = active_llm.get()
    if rid is None:
        return False
    return type(runs.get(rid)) is LLMRun


register_capture_probe(_llm_capture_probe)


def sweep(ttl: float) -> None:
    """Drop runs older than ``ttl`` seconds, and the oldest beyond the cap."""
    runs.sweep(ttl=ttl)


def run_state_size() -> int:
    """How many runs are currently tracked (for tests and leak checks)."""
    return len(runs)


def uuid_str(u: UUID) -> str:
    """``str(uuid)``, about twice as fast (it is on the per-root path)."""
    h = u.hex
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def at(t: float) -> dt.datetime:
    """A ``time.time()`` value as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


# Whether tool runs start with their tool_call_id: langchain-core < 1.2 passes none to
# on_tool_start (nor to on_tool_error), so a failed tool could not be tied to the model's
# call. Learned from the first on_tool_start that carries the keyword; until then the
# models' tool calls are kept per tree and a starting tool run claims its own.
TOOL_IDS_AT_START = False
MAX_PENDING_CALLS = 64


def remember_tool_calls(root: Root, calls: Any) -> None:
    """Keep a model reply's tool calls for tool runs that will start without an id."""
    pending = root.tool_calls
    if pending is None:
        pending = root.tool_calls = []
    for call in calls:
        if isinstance(call, Mapping) and isinstance(call.get("id"), str):
            pending.append((call.get("name"), call.get("args"), call["id"]))
    if len(pending) > MAX_PENDING_CALLS:  # calls no tool ever ran: keep the newest
        del pending[:-MAX_PENDING_CALLS]


def claim_tool_call(root: Root, name: Any, args: Any) -> str | None:
    """The id of the pending call this tool run executes: same name and arguments, or
    the only pending call of that name (tools with injected arguments); None if unsure."""
    pending = root.tool_calls
    if not pending:
        return None
    same_name = [c for c in pending if c[0] == name]
    exact = [c for c in same_name if c[1] == args]
    for call in exact or (same_name if len(same_name) == 1 else ()):
        try:
            pending.remove(call)  # another thread may have claimed it
        except ValueError:
            continue
        return call[2]
    return None


def release_held(root: Root) -> None:
    """Send the retrievals a tree held back (its root ended without a model call)."""
    held, root.held_retrievals = root.held_retrievals, None
    for ev in held or ():
        root.client.record(ev)
