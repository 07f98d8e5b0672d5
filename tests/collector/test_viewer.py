"""The viewer in a real headless Chromium: transcript order, message kinds, escaping."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette")

from gf_integrations.collector import start_collector

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _post(col, body):
    r = httpx.post(col.base_url + "/messages", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _seed(col, *, hostile: bool = True) -> None:
    """A tidy chat and agentic conversation (for the screenshot), and a hostile one."""
    _post(
        col,
        {
            "externalUserId": "grace@example.com",
            "externalConversationId": "chat-7",
            "messages": [
                {"role": "user", "content": "Is Lisbon nice in March?"},
                {"role": "assistant", "content": "Yes: mild weather and fewer crowds."},
            ],
        },
    )
    _post(
        col,
        {
            "externalUserId": "ada@example.com",
            "externalOrganizationId": "acme",
            "externalConversationId": "support-42",
            "model": "gpt-4o",
            "systemPrompt": {
                "externalPromptId": "travel",
                "components": [
                    {
                        "content": "You are {{assistant}}, a travel assistant for {{company}}.",
                        "name": "persona",
                        "type": "system",
                        "source": "customer",
                    },
                    {"content": "Never invent prices.", "name": "guardrails", "type": "guardrail"},
                ],
                "variables": {"assistant": "Skye", "company": "Acme Travel"},
            },
            "messages": [
                {"role": "user", "content": "Find me a hotel in Lisbon.", "externalMessageId": "u"},
                {
                    "messageType": "thought",
                    "content": "Search hotels, check the policy.",
                    "externalMessageId": "th",
                    "parentExternalMessageId": "u",
                    "model": "gpt-4o",
                    "properties": {
                        "usage": {
                            "inputTokens": 120,
                            "outputTokens": 48,
                            "totalTokens": 168,
                            "cacheReadTokens": 100,
                            "reasoningTokens": 20,
                        },
                        "costUsd": 0.000655,
                        "pricing": {"table": "genai-prices", "version": "0.2.5"},
                        "latencyMs": 1180.5,
                    },
                },
                {
                    "messageType": "tool_call",
                    "toolName": "search_hotels",
                    "input": {"city": "Lisbon", "nights": 3},
                    "externalMessageId": "tc",
                    "parentExternalMessageId": "th",
                },
                {
                    "messageType": "observation",
                    "toolName": "search_hotels",
                    "output": {"hotels": [{"name": "Casa do Tejo", "price_eur": 118}]},
                    "externalMessageId": "ob",
                    "parentExternalMessageId": "tc",
                    "properties": {"latencyMs": 610},
                },
                {
                    "messageType": "tool_call",
                    "toolName": "get_rate",
                    "input": {"from": "EUR"},
                    "externalMessageId": "tc2",
                    "parentExternalMessageId": "th",
                },
                {
                    "messageType": "tool_error",
                    "toolName": "get_rate",
                    "content": "TimeoutError: rates service did not answer",
                    "output": {"error": {"type": "TimeoutError"}},
                    "externalMessageId": "te",
                    "parentExternalMessageId": "tc2",
                },
                {
                    "messageType": "retrieval",
                    "content": "cancellation policy",
                    "output": {
                        "documents": [
                            {"id": "policy.md", "score": 0.91, "text": "Free cancellation 48 h."}
                        ]
                    },
                    "externalMessageId": "rt",
                    "parentExternalMessageId": "u",
                },
                {
                    "messageType": "final_response",
                    "content": "Casa do Tejo, 118 EUR/night, free cancellation up to 48 h.",
                    "model": "gpt-4o",
                    "externalMessageId": "fa",
                    "parentExternalMessageId": "u",
                    "properties": {
                        # stored before the one vocabulary: still read
                        "usage": {"input_tokens": 260, "output_tokens": 51},
                        "latencyMs": 1402,
                    },
                },
            ],
        },
    )
    if not hostile:
        return
    _post(
        col,
        {
            "externalUserId": "mallory",
            "externalConversationId": "hostile",
            "systemPrompt": "<script>window.__pwned = 3</script>",
            "messages": [
                {"role": "user", "content": "first " + XSS, "externalMessageId": "1"},
                {
                    "role": "assistant",
                    "content": "second",
                    "properties": {
                        "x": XSS,
                        "costUsd": 0.01,
                        "pricing": {"table": XSS, "version": XSS},
                    },
                    "input": {XSS: XSS},
                },
                {"role": "user", "content": "third"},
            ],
        },
    )


@pytest.fixture(scope="module")
def browser():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no chromium binary (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=binary,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield b
        finally:
            b.close()


def test_viewer_transcript_order_kinds_and_screenshot(browser, tmp_path):
    with start_collector() as col:
        _seed(col, hostile=False)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        conv_id = col.conversation("support-42")["id"]
        page.goto(f"{col.url}/conversations/{conv_id}")
        kinds = page.eval_on_selector_all(".msg", "els => els.map(e => e.dataset.type)")
        assert kinds == [
            "user_message",
            "thought",
            "tool_call",
            "observation",
            "tool_call",
            "tool_error",
            "retrieval",
            "final_response",
        ]
        depths = page.eval_on_selector_all(".msg", "els => els.map(e => +e.dataset.depth)")
        assert depths == [0, 1, 2, 3, 2, 3, 1, 1]
        # message kinds look different (distinct left border colours per kind)
        colours = page.eval_on_selector_all(
            ".msg", "els => els.map(e => getComputedStyle(e).borderLeftColor)"
        )
        assert len({colours[0], colours[2], colours[5], colours[6], colours[7]}) == 5
        assert page.locator(".k-tool pre").first.inner_text().count('"city": "Lisbon"') == 1
        assert "Free cancellation 48 h." in page.locator(".k-retrieval .doc-text").inner_text()
        thought_usage = page.locator(".k-thought .chip-usage").inner_text()
        assert thought_usage == "in 120 · cached 100 · out 48 · reasoning 20 tok"
        assert page.locator(".k-final .chip-usage").inner_text() == "in 260 · out 51 tok"
        # the cost next to the tokens; an answer stored without one (older data) has none
        cost = page.locator(".k-thought .chip-cost")
        assert cost.inner_text() == "$0.000655"
        assert cost.get_attribute("title") == "estimated cost (genai-prices 0.2.5)"
        assert page.locator(".k-final .chip-cost").count() == 0
        # the conversation's tokens and cost: its model calls' sums
        assert page.locator(".conv-usage").inner_text() == (
            "in 380 · cached 100 · out 99 · reasoning 20 · total 479 tok"
        )
        assert page.locator(".conv-cost").inner_text() == "$0.000655 + 1 unpriced"
        assert page.locator(".k-final .chip-latency").inner_text() == "1402 ms"
        # system prompt components with the variables highlighted
        assert page.locator(".prompt .comp").count() == 2
        assert page.locator(".prompt .var").all_text_contents() == [
            "assistantSkye",
            "companyAcme Travel",
        ]
        assert page.locator("nav a.conv").count() == 2
        shot = tmp_path / "viewer.png"
        page.screenshot(path=str(shot), full_page=True)
        page.close()
    assert shot.stat().st_size > 10_000
    # The README's picture: refreshed only when missing or asked for, so that a test run
    # does not dirty the checkout.
    target = DOCS / "viewer.png"
    if not target.exists() or os.environ.get("GF_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shot, target)


def test_injected_script_never_runs_and_shows_as_text(browser):
    with start_collector() as col:
        _seed(col)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(col.url + "/?c=hostile")
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("script").count() == 0
        assert page.locator(".msg img").count() == 0
        contents = page.locator(".msg .content").all_inner_texts()
        assert contents == ["first " + XSS, "second", "third"]
        assert json.dumps(XSS) in page.locator(".k-assistant pre").first.inner_text()
        cost = page.locator(".k-assistant .chip-cost")
        assert cost.get_attribute("title") == f"estimated cost ({XSS} {XSS})"
        assert page.locator(".conv-cost").inner_text() == "$0.01"
        assert "<script>window.__pwned = 3</script>" in page.locator(".prompt").inner_text()
        # the list links to both conversations and navigation works
        page.click("nav a.conv >> text=support-42")
        assert page.locator(".msg").count() == 8
        assert page.locator("nav a.conv").count() == 3
        assert page.evaluate("() => window.__pwned") is None
        assert errors == []
        page.close()


def test_ratings_and_events_show_on_the_message_the_conversation_and_the_timeline(browser):
    with start_collector() as col:
        _post(
            col,
            {
                "externalUserId": "ada",
                "externalConversationId": "rated",
                "productId": "shop",
                "messages": [
                    {
                        "role": "user",
                        "content": "Which plan fits a team of five?",
                        "externalMessageId": "q1",
                        "createdAt": "2026-01-01T10:00:00Z",
                    },
                    {
                        "role": "assistant",
                        "content": "Team plan: five seats, 49 EUR a month.",
                        "externalMessageId": "a1",
                        "createdAt": "2026-01-01T10:00:02Z",
                    },
                    {
                        "role": "user",
                        "content": "And with SSO?",
                        "externalMessageId": "q2",
                        "createdAt": "2026-01-01T10:05:00Z",
                    },
                    {
                        "role": "assistant",
                        "content": "Business plan.",
                        "externalMessageId": "a2",
                        "createdAt": "2026-01-01T10:05:02Z",
                    },
                ],
            },
        )

        def send(path: str, body: dict) -> None:
            r = httpx.post(f"{col.base_url}/{path}", json={"productId": "shop", **body}, timeout=10)
            assert r.status_code == 200, r.text

        scale = {"ratingMin": 1, "ratingMax": 5}
        send("ratings", {"externalMessageId": "a1", "rating": 5, **scale, "feedback": XSS})
        send("ratings", {"externalMessageId": "a2", "rating": 1, **scale})
        send(
            "ratings",
            {"externalConversationId": "rated", "rating": 0, "ratingMin": 0, "ratingMax": 1},
        )
        common = {"externalConversationId": "rated", "eventAt": "2026-01-01T10:03:00Z"}
        send("events", {**common, "eventType": "upgrade", "value": "49", "influence": "positive"})
        send(
            "events", {**common, "eventType": XSS, "value": XSS, "eventAt": "2026-01-01T11:00:00Z"}
        )

        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(col.url + "/?c=rated")
        # the timeline: the first event falls between the two turns, the late one after them
        order = page.eval_on_selector_all(
            ".transcript > *",
            "els => els.map(e => e.classList.contains('event') ? 'event:' + e.dataset.influence"
            " : e.dataset.type)",
        )
        assert order == [
            "user_message",
            "assistant_message",
            "event:positive",
            "user_message",
            "assistant_message",
            "event:neutral",
        ]
        ratings = page.locator(".msg .rating")
        assert ratings.count() == 2
        good = page.locator(".msg", has_text="Team plan").locator(".rating")
        assert good.get_attribute("data-rating") == "5.0"
        assert "message rating 5 / 5" in good.inner_text()
        assert (
            page.locator(".msg", has_text="Team plan").locator(".rating-feedback").inner_text()
            == XSS
        )
        assert "r-good" in (good.get_attribute("class") or "")
        bad = page.locator(".msg", has_text="Business plan").locator(".rating")
        assert "r-bad" in (bad.get_attribute("class") or "")
        conv_rating = page.locator(".conv-head .rating[data-scope=conversation]")
        assert "conversation rating 0 / 1" in conv_rating.inner_text()
        first_event = page.locator(".event").first
        assert first_event.locator(".event-type").inner_text() == "upgrade"
        assert first_event.locator(".event-value").inner_text() == "49"
        assert page.locator(".event").nth(1).locator(".event-type").inner_text() == XSS
        # hostile feedback and event values stay text
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("script").count() == 0
        assert page.locator(".rating img, .event img").count() == 0
        assert errors == []
        page.close()
