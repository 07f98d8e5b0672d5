"""The demo notebooks run top to bottom in a real Jupyter kernel, and store what they say.

Each notebook starts its own local collector; the test hands it a database path through
``GF_NOTEBOOK_DB`` and, after the kernel has shut down, opens that SQLite file with the
collector's :class:`~gf_integrations.collector.Store` and checks the stored conversations.
The kernel is this interpreter (a kernelspec written to a temp dir at test time), so the
notebooks see exactly the packages under test.
"""

from __future__ import annotations

import concurrent.futures
import copy
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("uvicorn")

from gf_integrations.collector import Store  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
KERNEL = "gf-integrations-test"


def _load_build() -> Any:
    spec = importlib.util.spec_from_file_location("gf_notebooks_build", NB_DIR / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernelspec pinned to this interpreter, found first through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "gf-integrations tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(root), old) if p)
    try:
        yield KERNEL
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old


@pytest.fixture(scope="module")
def executed(
    kernel_name: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Any, Path] | BaseException]:
    """Execute the committed notebooks concurrently (one kernel each).

    Each kernel gets its own ``GF_NOTEBOOK_DB`` and no ``GREENFLASH_*`` variable: the
    notebooks must not need (or reach) a real account. Maps each notebook to (executed
    notebook, database path), or to the exception its execution raised.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("GREENFLASH_")}

    def run(name: str) -> tuple[Any, Path]:
        db = tmp_path_factory.mktemp(name.split(".")[0]) / "notebook.sqlite3"
        nb = nbformat.read(NB_DIR / name, as_version=4)
        env = {**base, build.DB_ENV: str(db)}
        build.execute(nb, kernel_name=kernel_name, timeout=90, env=env)
        return nb, db

    results: dict[str, tuple[Any, Path] | BaseException] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(build.NOTEBOOKS)) as pool:
        futures = {name: pool.submit(run, name) for name in build.NOTEBOOKS}
        for name, future in futures.items():
            exc = future.exception()
            results[name] = exc if exc is not None else future.result()
    return results


def run_notebook(executed: dict[str, Any], name: str) -> tuple[Any, Store]:
    """The executed notebook (fresh outputs) and the collector store it wrote."""
    result = executed[name]
    if isinstance(result, BaseException):
        raise result
    nb, db = result
    assert db.exists(), "the notebook's collector did not use GF_NOTEBOOK_DB"
    return nb, Store(db)


def plain_outputs(nb: Any) -> list[list[str]]:
    """Per code cell, its printed text and the text/plain of what it displayed."""
    return [
        [out.get("text") or out.get("data", {}).get("text/plain", "") for out in cell.outputs]
        for cell in nb.cells
        if cell.cell_type == "code"
    ]


def assert_committed_outputs_current(name: str, nb: Any) -> None:
    """What the committed notebook shows is what it prints today (up to normalising)."""
    fresh = plain_outputs(build.normalise(nbformat.from_dict(copy.deepcopy(dict(nb)))))
    committed = plain_outputs(nbformat.read(NB_DIR / name, as_version=4))
    assert fresh == committed, f"{name} outputs are stale: run .venv/bin/python notebooks/build.py"


def stored(store: Store, external_id: str) -> dict[str, Any]:
    cid = store.find_conversation_id(external_id)
    assert cid is not None, f"conversation {external_id!r} was not stored"
    conv = store.get_conversation(cid)
    assert conv is not None
    return conv


def kinds(conv: dict[str, Any]) -> list[str]:
    return [m["messageType"] for m in conv["messages"]]


def html_outputs(nb: Any) -> list[str]:
    return [
        out["data"]["text/html"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "text/html" in out.get("data", {})
    ]


def assert_transcripts_shown(nb: Any, store: Store, *external_ids: str) -> None:
    """The last cells display each conversation's transcript, linked to the viewer."""
    shown = html_outputs(nb)
    assert len(shown) == len(external_ids)
    for page, ext in zip(shown, external_ids, strict=True):
        conv = stored(store, ext)
        assert f"conversation {ext}" in page
        assert f"/conversations/{conv['id']}" in page
        for m in conv["messages"]:
            if m["content"]:
                # Escaped exactly like the transcript escapes it.
                assert m["content"].replace("'", "&#x27;").replace('"', "&quot;") in page


def test_langchain_notebook(executed):
    nb, store = run_notebook(executed, "01_langchain.ipynb")
    chat = stored(store, "trip-42")
    assert chat["externalUserId"] == "alice"
    assert kinds(chat) == ["user_message", "assistant_message"] * 2
    assert [m["content"] for m in chat["messages"]][::2] == [
        "What is Lisbon like in April?",
        "Any tip for getting around?",
    ]
    assert chat["messages"][1]["model"] == "fake-gpt-1"
    components = chat["prompt"]["components"]
    assert any("{{company}}" in c["content"] for c in components)
    assert chat["promptVariables"] == {"company": "Acme Travel"}

    agent = stored(store, "support-7")
    assert agent["externalUserId"] == "bob"
    msgs = agent["messages"]
    ks = kinds(agent)
    assert ks[0] == "user_message"
    assert ks[-1] == "final_response"
    calls = [m for m in msgs if m["messageType"] == "tool_call"]
    assert [(c["toolName"], c["input"]) for c in calls] == [
        ("search_docs", {"query": "refunds"}),
        ("order_status", {"order_id": "A-1001"}),
    ]
    by_id = {m["id"]: m for m in msgs}
    observations = [m for m in msgs if m["messageType"] == "observation"]
    assert [by_id[o["parentId"]]["toolName"] for o in observations] == [
        "search_docs",
        "order_status",
    ]
    (retrieval,) = [m for m in msgs if m["messageType"] == "retrieval"]
    assert retrieval["output"]["documents"][0]["metadata"] == {"source": "kb/refunds"}
    assert "within 14 days" in msgs[-1]["content"]
    assert "Acme's support agent" in agent["prompt"]["components"][0]["content"]
    assert_rated(agent, 1.0, "found my order at once", [("ticket_resolved", "true")])
    assert_transcripts_shown(nb, store, "trip-42", "support-7")
    assert_committed_outputs_current("01_langchain.ipynb", nb)


def assert_rated(
    conv: dict[str, Any], rating: float, feedback: str, events: list[tuple[str, str]]
) -> None:
    """The notebook's last cell rated the conversation's final answer, and tracked events."""
    (stored_rating,) = conv["ratings"]
    assert (stored_rating["rating"], stored_rating["feedback"]) == (rating, feedback)
    assert stored_rating["messageId"] == conv["messages"][-1]["id"]
    assert [(e["eventType"], e["value"]) for e in conv["events"]] == events


def test_transcript_escapes_content_and_threads_replies():
    """The notebook transcript never lets stored content become markup."""
    from gf_integrations.notebook import transcript

    evil = '<script>alert("x")</script>'
    t = transcript(
        [
            {"id": "u", "messageType": "user_message", "content": evil},
            {
                "id": "t",
                "parentId": "u",
                "messageType": "tool_call",
                "toolName": "<u>evil-tool</u>",
                "input": {"q": "<img src=x onerror=alert(1)>"},
            },
            {"id": "o", "parentId": "t", "messageType": "observation", "content": "ok"},
            {
                "id": "r",
                "parentId": "u",
                "messageType": "retrieval",
                "content": "q",
                "output": {"documents": [{"id": "d1", "text": "<em>doc</em>", "score": 0.5}]},
            },
        ],
        title="<t-title>",
        system_prompt={
            "components": [{"name": "n", "content": "<s-comp>"}],
            "variables": {"v": "<"},
        },
        viewer_url='http://127.0.0.1:1/"onmouseover="x',
    )
    page = t._repr_html_()
    for raw in ("<script>", "<img", "<u>", "<em>", "<t-title>", "<s-comp>", '"onmouseover'):
        assert raw not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;em&gt;doc&lt;/em&gt;" in page
    assert t.kinds == ["user", "tool_call", "observation", "retrieval"]
    # depth: the tool call and the retrieval under the user, the observation under the call
    margins = re.findall(r"margin:4px 0 4px (\d+)px", page)
    assert margins == ["0", "24", "48", "24"]
    assert str(t).splitlines()[1:4] == [
        f"user: {evil}",
        '  tool_call(<u>evil-tool</u>): {"q": "<img src=x onerror=alert(1)>"}',
        "    observation: ok",
    ]


def test_committed_notebooks_are_generated_and_normalised():
    """The committed files match notebooks/build.py and carry no ports or timings."""
    assert build.main(["--check"]) == 0
    for name in build.NOTEBOOKS:
        text = (NB_DIR / name).read_text()
        assert not re.search(r"127\.0\.0\.1:\d", text), name
        nb = nbformat.read(NB_DIR / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            assert "execution" not in cell.metadata, name
            for out in cell.get("outputs", []):
                assert out.get("output_type") != "error", name
                assert out.get("name") != "stderr", name


def tool_results(conv: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(type, tool name of the parent tool_call, content) of observations and tool errors."""
    by_id = {m["id"]: m for m in conv["messages"]}
    return [
        (m["messageType"], by_id[m["parentId"]]["toolName"], m["content"])
        for m in conv["messages"]
        if m["messageType"] in ("observation", "tool_error")
    ]


def test_llamaindex_notebook(executed):
    nb, store = run_notebook(executed, "03_llamaindex.ipynb")
    rag = stored(store, "x2-questions")
    assert rag["externalUserId"] == "carol"
    ks = kinds(rag)
    assert ks[0] == "user_message"
    assert ks[-1] == "final_response"
    assert rag["messages"][0]["content"] == "How long does the X2 battery last?"
    (retrieval,) = [m for m in rag["messages"] if m["messageType"] == "retrieval"]
    assert [d["id"] for d in retrieval["output"]["documents"]] == ["x2-battery", "x2-specs"]
    answer = rag["messages"][-1]
    assert answer["content"].endswith("lasts 18 hours and charges fully in 90 minutes.")
    assert "lasts 18 hours" in answer["context"]
    assert answer["model"] == "fake-llm-1"

    agent = stored(store, "concierge-1")
    ks = kinds(agent)
    assert ks[0] == "user_message"
    assert ks[-1] == "final_response"
    calls = [(m["toolName"], m["input"]) for m in agent["messages"] if m["toolName"]]
    assert ("get_weather", {"city": "Rome"}) in calls
    assert ("book_table", {"city": "Rome"}) in calls
    assert tool_results(agent) == [
        ("observation", "get_weather", "Sunny and 24 °C in Rome."),
        ("tool_error", "book_table", "RuntimeError: no tables left tonight"),
    ]
    assert agent["prompt"]["components"][0]["content"] == "You are a concierge. Use the tools."
    assert_rated(agent, 2.0, "no table, sadly", [("booking_failed", "Rome")])
    assert_transcripts_shown(nb, store, "x2-questions", "concierge-1")
    assert_committed_outputs_current("03_llamaindex.ipynb", nb)


def test_openai_notebook(executed):
    nb, store = run_notebook(executed, "02_openai.ipynb")
    chat = stored(store, "geo-chat")
    assert chat["externalUserId"] == "alice"
    assert kinds(chat) == ["user_message", "assistant_message"] * 2  # history stored once
    assert [m["content"] for m in chat["messages"]] == [
        "What is the capital of Portugal?",
        "The capital you asked about is Lisbon.",
        "And the capital of Japan?",
        "The capital you asked about is Tokyo.",  # the streamed reply
    ]
    assert chat["prompt"]["components"][0]["content"] == "You are a concise geography tutor."
    assert chat["messages"][1]["model"] == "gpt-4o-mini"

    tools = stored(store, "weather-bot")
    assert kinds(tools) == ["user_message", "tool_call", "observation", "final_response"]
    assert tools["messages"][1]["toolName"] == "get_weather"
    assert tools["messages"][1]["input"] == {"city": "Rome"}
    assert tool_results(tools) == [("observation", "get_weather", "Sunny and 24 °C in Rome.")]

    quiz = stored(store, "capitals-quiz")
    assert kinds(quiz) == ["user_message", "assistant_message"] * 2
    assert [m["content"] for m in quiz["messages"]][1::2] == ["Rome", "Berlin"]
    assert quiz["prompt"]["components"][0]["content"] == "Answer with the city only."
    assert_rated(quiz, 1.0, "right city", [])
    assert_transcripts_shown(nb, store, "geo-chat", "weather-bot", "capitals-quiz")
    assert_committed_outputs_current("02_openai.ipynb", nb)


def test_anthropic_notebook(executed):
    nb, store = run_notebook(executed, "04_anthropic.ipynb")
    chat = stored(store, "claude-geo")
    assert chat["externalUserId"] == "alice"
    assert kinds(chat) == ["user_message", "assistant_message"] * 2  # history stored once
    assert [m["content"] for m in chat["messages"]] == [
        "What is the capital of Portugal?",
        "The capital you asked about is Lisbon.",
        "And the capital of Japan?",
        "The capital you asked about is Tokyo.",  # the streaming helper's reply
    ]
    assert chat["prompt"]["components"][0]["content"] == "You are a concise geography tutor."
    assert chat["messages"][1]["model"] == "claude-sonnet-4-6"

    tools = stored(store, "claude-weather")
    assert kinds(tools) == [
        "user_message",
        "thought",
        "thought",
        "tool_call",
        "observation",
        "thought",
        "final_response",
    ]
    msgs = tools["messages"]
    assert [m["content"] for m in msgs if m["messageType"] == "thought"] == [
        "The tool knows this.",
        "Let me check.",
        "The tool has answered: summarise it.",
    ]
    assert msgs[3]["toolName"] == "get_weather"
    assert msgs[3]["input"] == {"city": "Rome"}
    assert msgs[2]["properties"]["finishReason"] == "tool_use"
    assert msgs[2]["properties"]["usage"]["cacheReadTokens"] >= 0
    assert tool_results(tools) == [("observation", "get_weather", "Sunny and 24 °C in Rome.")]
    assert msgs[-1]["content"] == "Good news: Sunny and 24 °C in Rome."
    assert_transcripts_shown(nb, store, "claude-geo", "claude-weather")
    assert_committed_outputs_current("04_anthropic.ipynb", nb)


def test_otel_notebook(executed):
    nb, store = run_notebook(executed, "05_otel.ipynb")
    trip = stored(store, "lisbon-trip")
    assert trip["externalUserId"] == "dana"
    # the second run resends the first run's messages: each is stored once
    assert kinds(trip) == [
        "user_message",
        "thought",
        "tool_call",
        "observation",
        "final_response",
        "user_message",
        "assistant_message",
    ]
    assert [m["content"] for m in trip["messages"]][4:] == [
        "It is sunny and 24 °C in Lisbon today.",
        "And tomorrow?",
        "Tomorrow looks sunny as well.",
    ]
    assert trip["messages"][2]["toolName"] == "get_weather"
    assert trip["messages"][2]["input"] == {"city": "Lisbon"}
    assert tool_results(trip) == [("observation", "get_weather", "sunny and 24 °C")]
    assert trip["messages"][4]["model"] == "scripted-model"
    prompt = trip["prompt"]["components"][0]["content"]
    assert prompt == "You are a travel assistant. Use the tools."
    assert_transcripts_shown(nb, store, "lisbon-trip")
    assert_committed_outputs_current("05_otel.ipynb", nb)


def test_more_providers_notebook(executed):
    nb, store = run_notebook(executed, "06_more_providers.ipynb")
    weather = "Should I pack sunglasses for Rome today?"
    rome = "Good news: Sunny and 24 °C in Rome."
    tool_loop = ["user_message", "tool_call", "observation", "final_response"]

    # Google Gen AI: a call with a system instruction, then a chat whose function the
    # SDK ran itself (automatic function calling), each turn and each message once
    geo = stored(store, "gemini-geo")
    assert geo["externalUserId"] == "alice"
    assert kinds(geo) == ["user_message", "assistant_message"]
    assert [m["content"] for m in geo["messages"]] == [
        "What is the capital of Portugal?",
        "The capital you asked about is Lisbon.",
    ]
    assert geo["prompt"]["components"][0]["content"] == "You are a concise geography tutor."
    assert geo["messages"][1]["model"] == "gemini-2.5-flash-001"  # the answering version
    chat = stored(store, "gemini-weather")
    assert chat["externalUserId"] == "alice"
    assert kinds(chat) == tool_loop * 2
    msgs = chat["messages"]
    assert [m["content"] for m in msgs if m["messageType"] == "user_message"] == [
        weather,
        "And for Tokyo?",
    ]
    assert [m["input"] for m in msgs if m["messageType"] == "tool_call"] == [
        {"city": "Rome"},
        {"city": "Tokyo"},
    ]
    assert tool_results(chat) == [
        ("observation", "get_weather", "Sunny and 24 °C in Rome."),
        ("observation", "get_weather", "Sunny and 24 °C in Tokyo."),
    ]
    assert [m["content"] for m in msgs if m["messageType"] == "final_response"] == [
        rome,
        "Good news: Sunny and 24 °C in Tokyo.",
    ]

    # Amazon Bedrock: a Converse tool loop (the text beside the toolUse is a thought),
    # then a converse_stream reply
    loop = stored(store, "bedrock-weather")
    assert loop["externalUserId"] == "bob"
    assert kinds(loop) == [
        "user_message",
        "thought",
        "tool_call",
        "observation",
        "final_response",
    ]
    msgs = loop["messages"]
    assert msgs[0]["content"] == weather
    assert msgs[1]["content"] == "Let me check."
    assert msgs[1]["properties"]["finishReason"] == "tool_use"
    assert (msgs[2]["toolName"], msgs[2]["input"]) == ("get_weather", {"city": "Rome"})
    assert tool_results(loop) == [("observation", "get_weather", "Sunny and 24 °C in Rome.")]
    assert msgs[-1]["content"] == rome
    assert msgs[-1]["model"] == "amazon.nova-lite-v1:0"
    prompt = loop["prompt"]["components"][0]["content"]
    assert prompt == "You are a travel assistant. Use the tools."
    streamed = stored(store, "bedrock-geo")
    assert kinds(streamed) == ["user_message", "assistant_message"]
    assert streamed["messages"][-1]["content"] == "The capital you asked about is Tokyo."

    # LiteLLM: LiteLLM's session ids name the conversations
    tools = stored(store, "litellm-weather")
    assert tools["externalUserId"] == "carol"
    assert kinds(tools) == tool_loop
    assert tools["messages"][0]["content"] == weather
    assert tools["messages"][1]["input"] == {"city": "Rome"}
    assert tool_results(tools) == [("observation", "get_weather", "Sunny and 24 °C in Rome.")]
    assert tools["messages"][-1]["content"] == rome
    assert tools["messages"][-1]["model"] == "gpt-4o-mini-2024-07-18"  # the fake's snapshot
    stream = stored(store, "litellm-geo")
    assert stream["externalUserId"] == "carol"
    assert kinds(stream) == ["user_message", "assistant_message"]
    assert [m["content"] for m in stream["messages"]] == [
        "What is the capital of Italy?",
        "The capital you asked about is Rome.",
    ]
    assert stream["messages"][-1]["properties"]["stream"] is True

    assert_transcripts_shown(
        nb,
        store,
        "gemini-geo",
        "gemini-weather",
        "bedrock-weather",
        "bedrock-geo",
        "litellm-weather",
        "litellm-geo",
    )
    assert_committed_outputs_current("06_more_providers.ipynb", nb)
