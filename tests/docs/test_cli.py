"""The ``gf-integrations`` command: demo, upload and serve, against real collectors."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette")

from gf_integrations.cli import main

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
for _name in ("GREENFLASH_API_KEY", "GREENFLASH_BASE_URL", "GREENFLASH_SAMPLE_RATE"):
    ENV.pop(_name, None)


def test_package_import_does_not_pull_in_the_server():
    code = (
        "import sys, gf_integrations, gf_integrations.cli; "
        "bad = [m for m in ('starlette', 'uvicorn') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV, timeout=60)


def test_missing_extra_names_the_install_command():
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "try:\n    import gf_integrations.collector\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60
    ).stdout
    assert "pip install 'gf-integrations[local]'" in out


@pytest.mark.slow
def test_demo_command_runs_embedded_and_exits_zero():
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gf_integrations.cli", "demo"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 30
    out = proc.stdout
    # The embedded collector stopped with the command: no link to a dead viewer.
    assert "Open the viewer" not in out
    assert "gf-integrations demo --serve" in out
    for needle in (
        "user_message: Hi! Is Lisbon nice in March?",
        "tool_call search_hotels",
        "observation search_hotels",
        "tool_error get_exchange_rate: TimeoutError",
        "retrieval: hotel booking cancellation policy -> 2 document(s)",
        "final_response: Casa do Tejo",
        "Stored 12 messages in 2 conversations.",
    ):
        assert needle in out, needle


@pytest.mark.slow
def test_demo_serve_links_a_viewer_that_answers():
    proc = subprocess.Popen(
        [sys.executable, "-m", "gf_integrations.cli", "demo", "--serve"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:  # ends when the process exits, so a failure cannot hang
            found = re.search(r"Open the viewer: (http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url, proc.stderr.read() if proc.stderr else ""
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        assert "demo-agent-" in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_demo_into_a_running_collector(collector, capsys):
    assert main(["demo", "--url", collector.url]) == 0
    out = capsys.readouterr().out
    assert f"Open the viewer: {collector.url}/" in out
    convs = {c["externalConversationId"]: c for c in collector.conversations()}
    assert len(convs) == 2
    agent = next(k for k in convs if k.startswith("demo-agent-"))
    kinds = [m["messageType"] for m in collector.messages(agent)]
    assert kinds == [
        "user_message",
        "thought",
        "tool_call",
        "tool_call",
        "observation",
        "tool_error",
        "retrieval",
        "final_response",
    ]
    # the agent's plain-string prompt was matched to the chat's template
    assert convs[agent]["promptVariables"] == {"assistant_name": "Skye", "company": "Acme Travel"}
    chat = next(k for k in convs if k.startswith("demo-chat-"))
    assert convs[chat]["promptId"] == convs[agent]["promptId"]
    assert convs[chat]["externalOrganizationId"] == "acme"


def _write(path: Path, lines: list[object]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line if isinstance(line, str) else json.dumps(line))
            fh.write("\n")
    return path


def test_upload_jsonl_both_formats_rerun_dedups_and_skips_bad_lines(collector, tmp_path, capsys):
    api_line = {
        "externalUserId": "u1",
        "externalConversationId": "hist-1",
        "systemPrompt": "Be helpful.",
        "messages": [
            {"role": "user", "content": "hello", "createdAt": "2024-03-01T09:00:00Z"},
            {"role": "assistant", "content": "hi!", "createdAt": "2024-03-01T09:00:05Z"},
        ],
    }
    openai_line = {
        "user": "u2",
        "created": 1709283600,  # not used: createdAt below wins
        "createdAt": "2024-03-02T10:00:00Z",
        "messages": [
            {"role": "system", "content": "You are a bot."},
            {"role": "user", "content": "weather in Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny in Rome."},
        ],
    }
    path = _write(
        tmp_path / "history.jsonl",
        [
            api_line,
            "{not json",
            openai_line,
            "",
            {"externalUserId": "u3", "externalConversationId": "x", "messages": []},
            {"messages": [{"role": "wizard", "content": "?"}]},
        ],
    )
    assert main(["upload", str(path), "--url", collector.base_url]) == 0
    cap = capsys.readouterr()
    assert "uploaded" in cap.out
    assert "6 created, 0 deduplicated, 3 line(s) skipped" in cap.out
    assert "line 2: skipped" in cap.err
    assert "line 5: skipped" in cap.err
    assert "line 6: skipped" in cap.err

    hist = collector.messages("hist-1")
    assert [(m["content"], m["createdAt"]) for m in hist] == [
        ("hello", "2024-03-01T09:00:00.000000Z"),
        ("hi!", "2024-03-01T09:00:05.000000Z"),
    ]
    oa_conv = next(c for c in collector.conversations() if c["externalUserId"] == "u2")
    oa = collector.messages(oa_conv["externalConversationId"])
    assert [m["messageType"] for m in oa] == [
        "user_message",
        "tool_call",
        "observation",
        "assistant_message",
    ]
    assert oa[1]["input"] == {"city": "Rome"}
    assert oa[1]["toolName"] == "weather"
    assert oa[2]["parentId"] == oa[1]["id"]
    assert oa[0]["createdAt"].startswith("2024-03-02T10:00:00")
    assert collector.conversation(oa_conv["externalConversationId"])["prompt"]["components"][0][
        "content"
    ] == ("You are a bot.")

    # rerun: nothing is stored twice
    before = collector.counts()["messages"]
    assert main(["upload", str(path), "--url", collector.base_url, "--batch-size", "1"]) == 0
    cap = capsys.readouterr()
    assert "0 created, 6 deduplicated, 3 line(s) skipped" in cap.out
    assert collector.counts()["messages"] == before == 6


def test_upload_turns_split_over_lines_are_all_kept(collector, tmp_path, capsys):
    turn = {
        "externalUserId": "u",
        "externalConversationId": "split",
        "messages": [{"role": "user", "content": "again"}],
    }
    path = _write(tmp_path / "turns.jsonl", [turn, turn, turn])
    assert main(["upload", str(path), "--url", collector.base_url]) == 0
    assert "3 created, 0 deduplicated" in capsys.readouterr().out
    assert [m["content"] for m in collector.messages("split")] == ["again"] * 3


def test_upload_refuses_remote_without_key(tmp_path, capsys):
    path = _write(tmp_path / "a.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
    assert main(["upload", str(path), "--url", "https://example.invalid/api/v1"]) == 2
    assert "GREENFLASH_API_KEY" in capsys.readouterr().err
    assert main(["upload", str(tmp_path / "missing.jsonl"), "--url", "http://127.0.0.1:9"]) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_command_with_api_key_persists_to_db(tmp_path):
    port = _free_port()
    db = tmp_path / "served.sqlite3"
    cmd = [sys.executable, "-m", "gf_integrations.cli", "serve", "--port", str(port)]
    cmd += ["--db", str(db), "--api-key", "k1"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 20
        while True:  # readiness: the banner is printed just before uvicorn binds
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.05)
        body = {
            "externalUserId": "u",
            "externalConversationId": "c",
            "messages": [{"role": "user", "content": "persist me"}],
        }
        assert httpx.post(base + "/messages", json=body).status_code == 401
        r = httpx.post(base + "/messages", json=body, headers={"authorization": "Bearer k1"})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    from gf_integrations.collector.store import Store

    store = Store(db)
    try:
        cid = store.find_conversation_id("c")
        assert cid is not None
        assert [m["content"] for m in store.messages_of(cid)] == ["persist me"]
    finally:
        store.close()
