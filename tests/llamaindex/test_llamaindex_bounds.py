"""LlamaIndex: state bounded whatever the framework fails to close; what is held is sent at exit.

Issue 12: agent-workflow spans whose close never runs (their event loop ended first) stayed
in the engine for ever, and index-build embedding summaries held at exit were never sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from test_llamaindex import (
    assert_state_empty,
    conv_messages,
    get_weather,
    inst,  # noqa: F401 - fixture
    kinds,
    needs_scripted_agents,
    offline_settings,  # noqa: F401 - fixture
    scripted_tools,
    settle,
)

import gf_integrations as gf
import gf_integrations.llamaindex as li


def _agent() -> Any:
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    llm = MockFunctionCallingLLM(response_generator=scripted_tools, is_chat_model=True)
    return FunctionAgent(
        name="weather", description="weather", tools=[get_weather], llm=llm, system_prompt="s"
    )


def _abandon(agent: Any, conv: str, keep: list[Any]) -> None:
    """Start an agent run, take its first event, then close its event loop for good.

    The run's handler and loop are kept alive (as a test framework or a server that
    dropped the loop would), so LlamaIndex never exits or drops the run's span.
    """
    loop = asyncio.new_event_loop()

    async def start() -> Any:
        with gf.conversation(conv):
            handler = agent.run(user_msg="Weather in Paris?")
        async for _event in handler.stream_events():
            break
        return handler

    keep.append((loop.run_until_complete(start()), loop))
    loop.close()


@needs_scripted_agents
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_spans_never_closed_are_bounded_in_count_and_time(
    inst,  # noqa: F811
    gf_client,
    capture_server,
    monkeypatch,
    caplog,
):
    agent = _agent()
    keep: list[Any] = []
    _abandon(agent, "abandoned-0", keep)
    sizes = inst._state_sizes()
    assert sizes["spans"] >= 1
    assert sizes["roots"] == 1

    monkeypatch.setattr(li, "_SPANS_MAX", 6)
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        for i in range(1, 10):
            _abandon(agent, f"abandoned-{i}", keep)
            sizes = inst._state_sizes()
            assert max(sizes["spans"], sizes["roots"]) <= 6, sizes
    assert sum("spans open" in r.getMessage() for r in caplog.records) == 1

    # time: once their roots have been idle for the TTL, the sweep forgets them all
    inst._engine._sweep(time.monotonic() + li._SPAN_TTL + 1)
    assert_state_empty(inst)

    # and a complete run afterwards is recorded as usual
    async def main() -> Any:
        with gf.conversation("complete"):
            return await agent.run(user_msg="Weather in Paris?")

    asyncio.run(main())
    settle(gf_client, capture_server)
    complete = kinds(conv_messages(capture_server, "complete"))
    assert complete[0] == "user"
    assert complete[-1] == "final_response"
    assert "observation" in complete
    assert conv_messages(capture_server, "abandoned-0")[0]["content"] == "Weather in Paris?"
    assert_state_empty(inst)


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys
    import gf_integrations as gf
    from gf_integrations.llamaindex import GreenflashInstrumentor
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding

    gf.configure(base_url=sys.argv[1], flush_interval=5.0, shutdown_timeout=5.0)
    Settings.embed_model = MockEmbedding(embed_dim=8, embed_batch_size=5)
    GreenflashInstrumentor().instrument()
    with gf.conversation("exit-build"):
        VectorStoreIndex.from_documents([Document(text=f"doc {i}") for i in range(12)])
    # exits now: no flush, no uninstrument; the summary is still held back
    """
)


@pytest.mark.slow
def test_build_summary_held_at_exit_is_sent(capture_server):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    proc = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, capture_server.base_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert capture_server.wait_for(lambda s: len(s.requests) == len(s.attempts) >= 1)
    msgs = conv_messages(capture_server, "exit-build")
    assert kinds(msgs) == ["embedding"]
    assert msgs[0]["output"] == {"count": 12, "dimensions": 8}
