"""The public surface: names, the default client, ``conversation(...)`` across tasks/threads,
and a package root that imports no framework."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gf_integrations as gf
import gf_integrations.client as client_mod

DESIGN_NAMES = {"configure", "GreenflashClient", "conversation", "flush", "shutdown"}
# exported names imported on first use (the package's __getattr__)
LAZY_NAMES = {"serverless"}


def test_all_is_sorted_complete_and_resolvable():
    names = gf.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(gf, name), name
    assert names_are_public_attrs() == set(names)
    assert set(names) >= DESIGN_NAMES


def names_are_public_attrs() -> set[str]:
    """Every public, non-module attribute of the package root."""
    public = {
        name
        for name, value in vars(gf).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__ import annotations
    }
    return public | {"__version__"} | LAZY_NAMES


def test_public_callables_have_docstrings():
    for name in gf.__all__:
        value = getattr(gf, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_import_pulls_in_no_framework():
    code = (
        "import sys, gf_integrations, gf_integrations.schema, gf_integrations.transport\n"
        "import gf_integrations.core.recorder\n"
        "bad = ('langchain', 'langchain_core', 'langgraph', 'llama_index', 'openai', "
        "'starlette', 'uvicorn', 'fastapi', 'greenflash')\n"
        "bad += ('opentelemetry', 'openinference', 'pydantic_ai', 'genai_prices')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))\n"
    )
    src = str(Path(__file__).parents[2] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src, "PATH": ""},
        timeout=60,
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_configure_replaces_and_shuts_down_the_default(capture_server):
    previous = client_mod._default
    try:
        first = gf.configure(base_url=capture_server.base_url, flush_interval=0.05)
        assert gf.get_client() is first
        second = gf.configure(base_url=capture_server.base_url, flush_interval=0.05)
        assert gf.get_client() is second
        assert first.uploader._closed
        assert gf.flush(1.0) is True
        gf.shutdown(1.0)
        assert second.uploader._closed
    finally:
        client_mod._default = previous


# -- conversation(...) ------------------------------------------------------------------------


def resolved_id(client: gf.GreenflashClient) -> str:
    return client.resolve(fallback_conversation_id="fallback").external_conversation_id


def test_conversation_nests_and_resets():
    client = gf.GreenflashClient(enabled=False)
    with gf.conversation("outer", external_user_id="u1", properties={"a": 1}):
        with gf.conversation("inner", properties={"b": 2}, force_sample=True):
            conv = client.resolve(fallback_conversation_id="x")
            assert conv.external_conversation_id == "inner"
            assert conv.external_user_id == "u1"  # inherited from the outer block
            assert dict(conv.properties or {}) == {"a": 1, "b": 2}
            assert conv.force_sample
        assert resolved_id(client) == "outer"
    assert resolved_id(client) == "fallback"


def test_conversation_is_isolated_per_asyncio_task():
    client = gf.GreenflashClient(enabled=False)

    async def turn(name: str) -> tuple[str, str]:
        with gf.conversation(name):
            await asyncio.sleep(0)  # interleave with the other tasks
            inner = await asyncio.create_task(child())
            return resolved_id(client), inner

    async def child() -> str:
        await asyncio.sleep(0)
        return resolved_id(client)  # a task created inside the block inherits it

    async def main() -> list[tuple[str, str]]:
        return await asyncio.gather(*(turn(f"conv-{i}") for i in range(20)))

    results = asyncio.run(main())
    assert results == [(f"conv-{i}", f"conv-{i}") for i in range(20)]


def test_conversation_crosses_threads_started_with_a_copied_context():
    client = gf.GreenflashClient(enabled=False)
    seen: dict[str, str] = {}

    def work(tag: str) -> None:
        seen[tag] = resolved_id(client)

    with gf.conversation("threaded"):
        ctx = contextvars.copy_context()
        t1 = threading.Thread(target=ctx.run, args=(work, "copied"))
        t2 = threading.Thread(target=work, args=("plain",))
        t1.start()
        t2.start()
        t1.join()
        t2.join()
        with ThreadPoolExecutor(1) as pool:
            ctx2 = contextvars.copy_context()
            seen["pool"] = pool.submit(ctx2.run, resolved_id, client).result()

        async def via_to_thread() -> str:
            return await asyncio.to_thread(resolved_id, client)

        seen["to_thread"] = asyncio.run(via_to_thread())
    assert seen == {
        "copied": "threaded",
        "plain": "fallback",  # a thread without a copied context starts empty
        "pool": "threaded",
        "to_thread": "threaded",
    }
