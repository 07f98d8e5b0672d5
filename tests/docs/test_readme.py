"""Every ```python block of the README runs, and what it records reaches a collector.

Each block runs in a fresh interpreter (a subprocess: no state leaks between blocks, and
the exit-time flush is exercised for real) with ``GREENFLASH_BASE_URL`` pointing at a
local collector started here, and ``OPENAI_BASE_URL`` at a loopback fake of the OpenAI
API (the notebooks' fake, served over real HTTP), so the README can show plain
``OpenAI()``. Nothing touches the internet. A block fenced as ```python no-run is
skipped; there are none today, keep it that way.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")

from gf_integrations.collector import RunningCollector, start_collector

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.M | re.S)
INTEGRATIONS = re.compile(
    r"from gf_integrations\."
    r"(langchain|openai|anthropic|llamaindex|bedrock|google_genai|litellm) import"
)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block not marked no-run."""
    blocks = []
    for m in FENCE.finditer(text):
        info = m.group(1).split()
        if info[:1] == ["python"] and "no-run" not in info:
            blocks.append((text.count("\n", 0, m.start()) + 1, m.group(2)))
    return blocks


def _load_fake_openai() -> Any:
    sys.path.insert(0, str(ROOT / "notebooks"))
    try:
        import _helpers

        return _helpers.openai_reply
    finally:
        sys.path.remove(str(ROOT / "notebooks"))


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[str]:
    """A loopback HTTP server answering like the OpenAI API; yields its base URL."""
    reply = _load_fake_openai()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            status, headers, content = reply(self.path, body)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[str]:
    """The notebooks' fake Messages API on a loopback port; yields its base URL."""
    sys.path.insert(0, str(ROOT / "notebooks"))
    try:
        import _helpers
    finally:
        sys.path.remove(str(ROOT / "notebooks"))
    with _helpers.anthropic_fake().serve() as base_url:
        yield base_url


@pytest.fixture(scope="module")
def fake_bedrock() -> Iterator[str]:
    """The test suite's fake Bedrock Runtime on a loopback port; yields its base URL."""
    from helpers.fake_bedrock import FakeBedrock

    with FakeBedrock().serve() as base_url:
        yield base_url


@pytest.fixture(scope="module")
def fake_gemini(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test suite's fake Gemini API on a loopback port. google-genai reads no base URL
    from the environment, so the blocks get a ``sitecustomize`` that defaults
    ``genai.Client``'s ``http_options`` to it; yields that folder for PYTHONPATH."""
    pytest.importorskip("google.genai")
    from helpers.fake_gemini import FakeGemini

    folder = tmp_path_factory.mktemp("gemini-site")
    (folder / "sitecustomize.py").write_text(
        "import os\n"
        "url = os.environ.get('GF_TEST_GEMINI_BASE_URL')\n"
        "if url:\n"
        "    from google import genai\n"
        "    _init = genai.Client.__init__\n"
        "    def _on_fake(self, *args, **kwargs):\n"
        "        kwargs.setdefault('http_options', {'base_url': url})\n"
        "        _init(self, *args, **kwargs)\n"
        "    genai.Client.__init__ = _on_fake\n"
    )
    with FakeGemini().serve() as base_url:
        os.environ["GF_TEST_GEMINI_BASE_URL"] = base_url
        try:
            yield str(folder)
        finally:
            os.environ.pop("GF_TEST_GEMINI_BASE_URL", None)


@pytest.fixture(scope="module")
def collector() -> Iterator[RunningCollector]:
    with start_collector() as col:
        yield col


def run_block(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_first_screen_keeps_the_two_commands():
    first_screen = "\n".join(README.read_text().splitlines()[:15])
    assert "make demo" in first_screen
    assert "make test" in first_screen


@pytest.mark.timeout(300)  # one fresh interpreter per block, four at a time
def test_every_python_block_runs_and_records(
    collector, fake_openai, fake_anthropic, fake_bedrock, fake_gemini, tmp_path
):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 7, "the README lost its snippets"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GREENFLASH_", "OPENAI_", "ANTHROPIC_", "AWS_"))
    }
    env.update(
        GREENFLASH_BASE_URL=collector.base_url,
        OPENAI_BASE_URL=fake_openai,
        OPENAI_API_KEY="sk-test-not-a-real-key",
        OPENAI_API_BASE=fake_openai,  # LiteLLM's name for it
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no price-map fetch at import
        ANTHROPIC_BASE_URL=fake_anthropic,
        ANTHROPIC_API_KEY="sk-ant-test-not-a-real-key",
        # boto3 reads a service's endpoint from AWS_ENDPOINT_URL_<SERVICE>
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME=fake_bedrock,
        AWS_ACCESS_KEY_ID="test-not-a-real-key",
        AWS_SECRET_ACCESS_KEY="test-not-a-real-secret",
        AWS_DEFAULT_REGION="us-east-1",
        GEMINI_API_KEY="test-not-a-real-key",
        GF_TEST_GEMINI_BASE_URL=os.environ["GF_TEST_GEMINI_BASE_URL"],
        PYTHONPATH=os.pathsep.join(filter(None, [fake_gemini, os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )

    # Blocks run concurrently (each in its own interpreter); a per-block product id tells
    # which block recorded what.
    def run(n: int, code: str) -> subprocess.CompletedProcess[str]:
        return run_block(code, {**env, "GREENFLASH_PRODUCT_ID": f"readme-{n}"}, tmp_path)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(run, range(len(blocks)), [code for _, code in blocks]))
    for n, ((line, code), proc) in enumerate(zip(blocks, procs, strict=True)):
        assert proc.returncode == 0, f"README.md:{line} failed:\n{proc.stderr[-3000:]}"
        own_sink = "start_collector" in code or "capture_messages" in code
        if INTEGRATIONS.search(code) and not own_sink:
            recorded = collector.conversations(product_id=f"readme-{n}")
            assert recorded, f"README.md:{line} recorded nothing:\n{proc.stderr[-3000:]}"

    # What the quick starts recorded, conversation by conversation.
    def kinds(external_id: str) -> list[str]:
        return [m["messageType"] for m in collector.messages(external_id)]

    assert kinds("geo-1") == ["user_message", "assistant_message"]
    geo = collector.conversation("geo-1")
    assert geo is not None
    assert geo["externalUserId"] == "u1"
    assert "{{role}}" in geo["prompt"]["components"][0]["content"]
    assert geo["promptVariables"] == {"role": "geographer"}

    assert kinds("t-1") == ["user_message", "assistant_message"]  # LangGraph thread_id
    assert [m["content"] for m in collector.messages("t-1")] == ["hi", "Hello! How can I help?"]

    qa = collector.messages("docs-qa-1")
    assert qa[0]["content"] == "What is the capital of France?"
    assert qa[-1]["messageType"] == "final_response"
    assert "Paris is the capital of France." in (qa[-1]["context"] or "")

    # The OpenAI quick start names no conversation: it is derived, so find it by content.
    openai_convs = [
        c
        for c in collector.conversations(external_user_id="u1")
        if [m["content"] for m in collector.messages(c["externalConversationId"])][:1]
        == ["What is the capital of France?"]
        and c["externalConversationId"] != "docs-qa-1"
    ]
    assert len(openai_convs) == 1
    (reply,) = [
        m
        for m in collector.messages(openai_convs[0]["externalConversationId"])
        if m["messageType"] == "assistant_message"
    ]
    assert reply["content"] == "The capital you asked about is Paris."
    assert reply["model"] == "gpt-4o-mini"

    # Serverless: the Lambda handler tried locally, and a @gf.serverless handler.
    assert kinds("lambda-1") == ["user_message", "assistant_message"]
    assert kinds("cloud-run-1") == ["user_message", "assistant_message"]

    # The Anthropic quick start: a create then the streaming helper, one derived conversation.
    (claude,) = [
        c
        for c in collector.conversations(external_user_id="u1")
        if [m["content"] for m in collector.messages(c["externalConversationId"])][:1]
        == ["What is the capital of Italy?"]
    ]
    assert claude["externalConversationId"].startswith("anthropic-")
    claude_msgs = collector.messages(claude["externalConversationId"])
    assert [(m["messageType"], m["content"]) for m in claude_msgs] == [
        ("user_message", "What is the capital of Italy?"),
        ("assistant_message", "The capital you asked about is Rome."),
        ("user_message", "And of Japan?"),
        ("assistant_message", "The capital you asked about is Tokyo."),
    ]
    assert claude_msgs[1]["model"] == "claude-sonnet-4-6"
    stored = collector.conversation(claude["externalConversationId"])
    assert stored is not None
    assert stored["prompt"]["components"][0]["content"] == "Answer in one sentence."

    # The OpenTelemetry quick start: Pydantic AI spans through GreenflashSpanProcessor.
    assert kinds("weather-otel-1") == ["user_message", "tool_call", "observation", "final_response"]
    otel_conv = collector.conversation("weather-otel-1")
    assert otel_conv is not None
    assert otel_conv["externalUserId"] == "u1"
    assert otel_conv["prompt"]["components"][0]["content"] == "Be brief."

    # User feedback and outcomes: each rating landed on the answer it was given for.
    def rated(external_id: str) -> list[tuple[str | None, float, str | None]]:
        by_id = {m["id"]: m for m in collector.messages(external_id)}
        return [
            (
                by_id[r["messageId"]]["messageType"] if r["messageId"] else None,
                r["rating"],
                r["feedback"],
            )
            for r in collector.ratings(external_id)
        ]

    assert rated("plans-1") == [("assistant_message", 1.0, "exactly what I needed")]
    (upgrade,) = collector.events("plans-1")
    assert (upgrade["eventType"], upgrade["value"], upgrade["externalUserId"]) == (
        "upgrade",
        "49.0",
        "u1",
    )
    profile = collector.user("u1")
    assert profile is not None
    assert (profile["name"], profile["properties"]) == ("Ada Lovelace", {"plan": "team"})
    assert rated("billing-1") == [("assistant_message", 4.0, None)]
    assert sorted(rated("docs-qa-2"), key=str) == [
        ("final_response", 0.0, "it should cite the source"),
        (None, 4.0, None),
    ]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def test_links_and_images_resolve():
    text = README.read_text()
    outside_code = FENCE.sub("", text)
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", outside_code, re.M)}
    targets = re.findall(r"\]\(([^)\s]+)\)", outside_code)
    assert "docs/viewer.png" in targets
    for target in targets:
        if target.startswith("#"):
            assert target[1:] in anchors, f"dead anchor {target}"
        elif not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"missing file {target}"


def bash_lines(text: str) -> list[str]:
    """Commands of the README's ```bash blocks, comments stripped."""
    lines = []
    for m in FENCE.finditer(text):
        if m.group(1).split()[:1] == ["bash"]:
            for raw in m.group(2).splitlines():
                cmd = raw.split(" #")[0].strip()
                if cmd:
                    lines.append(cmd)
    return lines


def test_shell_commands_exist():
    """Every `gf-integrations ...` line parses, every `make X` target and extra exists."""
    import shlex

    from gf_integrations.cli import build_parser

    lines = bash_lines(README.read_text())
    cli_lines = [shlex.split(c)[1:] for c in lines if c.startswith("gf-integrations ")]
    assert len(cli_lines) >= 4
    parser = build_parser()
    for argv in cli_lines:
        parser.parse_args(argv)  # SystemExit (a failure) on an unknown command or flag
    makefile = (ROOT / "Makefile").read_text()
    for cmd in lines:
        if cmd.startswith("make "):
            assert re.search(rf"^{cmd.split()[1]}:", makefile, re.M), cmd
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^([\w-]+) = \[", deps, re.M))
    pip_lines = [ln for ln in README.read_text().splitlines() if "pip install" in ln]
    named = re.findall(r"\[(\w+)\]", " ".join(pip_lines))
    assert named
    assert set(named) <= extras, set(named) - extras
