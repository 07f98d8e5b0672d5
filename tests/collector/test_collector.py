"""The local collector over real HTTP: the Greenflash contract, storage, reads, robustness."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import orjson
import pytest

pytest.importorskip("starlette")

from gf_integrations.collector import MAX_BODY_BYTES, start_collector
from gf_integrations.core.events import LLMCall, ToolResult
from gf_integrations.core.ids import sample_fraction
from gf_integrations.schema import CreateMessageResponse


def post(col: Any, body: Any, **kw: Any) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(col.base_url + "/messages", content=body, timeout=30, **kw)
    # compact UTF-8, as our uploader sends it (httpx < 0.28 would escape non-ASCII: 6 bytes
    # per character, and the sizes these tests send depend on it)
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    raw = orjson.dumps(body)
    return httpx.post(col.base_url + "/messages", content=raw, headers=headers, timeout=30, **kw)


def body(conv: str = "c1", *messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "externalUserId": "u1",
        "externalConversationId": conv,
        "messages": list(messages) or [{"role": "user", "content": "hi"}],
        **extra,
    }


# -- the official client --------------------------------------------------------------------


def test_official_greenflash_client_every_documented_field(collector):
    greenflash = pytest.importorskip("greenflash")
    gfc = greenflash.Greenflash(api_key="anything", base_url=collector.base_url, max_retries=0)
    r1 = gfc.messages.create(
        external_user_id="user-1",
        external_conversation_id="conv-1",
        external_organization_id="org-1",
        product_id="prod-1",
        model="gpt-4o",
        properties={"plan": "pro", "nested": {"a": [1, 2]}},
        sample_rate=1.0,
        force_sample=True,
        voice_call={
            "call_successful": True,
            "duration_ms": 61_000,
            "platform": "vapi",
            "latency": {"e2e_ms": 900},
        },
        system_prompt={
            "components": [
                {
                    "content": "You are {{name}}, helping {{customer}}.",
                    "name": "persona",
                    "type": "system",
                    "source": "customer",
                    "is_dynamic": False,
                    "external_component_id": "persona",
                },
                {"content": "Cite sources.", "type": "rag", "source": "agent", "is_dynamic": True},
            ],
            "external_prompt_id": "support-v1",
            "variables": {"name": "Ava", "customer": "Bob"},
        },
        messages=[
            {
                "role": "user",
                "content": "find my order",
                "external_message_id": "m1",
                "created_at": "2025-01-01T10:00:00Z",
                "properties": {"channel": "web"},
            },
            {
                "message_type": "thought",
                "content": "look it up",
                "external_message_id": "m2",
                "parent_external_message_id": "m1",
            },
            {
                "message_type": "tool_call",
                "tool_name": "orders.get",
                "input": {"id": 7},
                "external_message_id": "m3",
                "parent_external_message_id": "m1",
            },
            {
                "message_type": "observation",
                "output": {"status": "shipped"},
                "tool_name": "orders.get",
                "external_message_id": "m4",
                "parent_external_message_id": "m3",
            },
            {
                "message_type": "retrieval",
                "content": "shipping policy",
                "output": {"documents": [{"id": "d1", "text": "2-day"}]},
                "external_message_id": "m5",
            },
            {
                "message_type": "final_response",
                "content": "It shipped.",
                "context": "2-day",
                "model": "gpt-4o",
                "external_message_id": "m6",
                "parent_external_message_id": "m1",
                "voice": {"duration_ms": 1200, "asr_confidence": 0.9},
            },
        ],
    )
    assert r1.success is True
    assert [m.status for m in r1.messages] == ["created"] * 6
    assert [m.message_type for m in r1.messages] == [
        "user_message",
        "thought",
        "tool_call",
        "observation",
        "retrieval",
        "final_response",
    ]
    assert r1.system_prompt_prompt_id
    assert len(r1.system_prompt_component_ids) == 2
    assert r1.prompt_variables == {"name": "Ava", "customer": "Bob"}

    # same ids again, plus one new one, addressed by conversationId and parentMessageId
    r2 = gfc.messages.create(
        external_user_id="user-1",
        conversation_id=r1.conversation_id,
        messages=[
            {"role": "user", "content": "find my order", "external_message_id": "m1"},
            {
                "role": "assistant",
                "content": "anything else?",
                "external_message_id": "m7",
                "parent_message_id": r1.messages[0].message_id,
            },
        ],
        system_prompt={"external_prompt_id": "support-v1"},
    )
    assert r2.conversation_id == r1.conversation_id
    assert [m.status for m in r2.messages] == ["deduplicated", "created"]
    assert r2.messages[0].message_id == r1.messages[0].message_id
    assert r2.system_prompt_prompt_id == r1.system_prompt_prompt_id
    assert r2.system_prompt_component_ids == r1.system_prompt_component_ids

    # promptId refers to the stored prompt; a given componentId is kept as the id
    r2b = gfc.messages.create(
        external_user_id="user-3",
        external_conversation_id="conv-3",
        system_prompt={"prompt_id": r1.system_prompt_prompt_id, "variables": {"name": "Zed"}},
        messages=[{"role": "user", "content": "x"}],
    )
    assert r2b.system_prompt_prompt_id == r1.system_prompt_prompt_id
    assert r2b.prompt_variables == {"name": "Zed"}
    r2c = gfc.messages.create(
        external_user_id="user-3",
        external_conversation_id="conv-4",
        system_prompt={
            "components": [
                {"content": "Use tables.", "component_id": "comp-fixed"},
                {"content": "Be brief."},
            ]
        },
        messages=[{"role": "user", "content": "y"}],
    )
    assert r2c.system_prompt_component_ids[0] == "comp-fixed"
    assert r2c.system_prompt_prompt_id != r1.system_prompt_prompt_id

    # a plain string prompt that fills the template is matched to it
    r3 = gfc.messages.create(
        external_user_id="user-2",
        external_conversation_id="conv-2",
        system_prompt="You are Max, helping Carol.\n\nCite sources.",
        messages=[{"role": "user", "content": "hello"}],
    )
    assert r3.template_match is not None
    assert r3.template_match.matched
    assert r3.template_match.prompt_id == r1.system_prompt_prompt_id
    assert r3.template_match.detected_variables == {"name": "Max", "customer": "Carol"}
    assert r3.template_match.confidence in ("exact", "high", "medium")
    assert r3.prompt_variables == {"name": "Max", "customer": "Carol"}

    conv = collector.conversation("conv-1", product_id="prod-1")
    assert conv["externalOrganizationId"] == "org-1"
    assert conv["productId"] == "prod-1"
    assert conv["properties"] == {"plan": "pro", "nested": {"a": [1, 2]}}
    assert conv["voiceCall"] == {
        "callSuccessful": True,
        "durationMs": 61_000,
        "platform": "vapi",
        "latency": {"e2eMs": 900},
    }
    msgs = conv["messages"]
    assert [m["externalMessageId"] for m in msgs] == ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]
    assert msgs[0]["createdAt"] == "2025-01-01T10:00:00.000000Z"
    assert msgs[0]["properties"] == {"channel": "web"}
    assert msgs[5]["voice"] == {"durationMs": 1200, "asrConfidence": 0.9}
    by_ext = {m["externalMessageId"]: m for m in msgs}
    assert by_ext["m4"]["parentId"] == by_ext["m3"]["id"]
    assert by_ext["m7"]["parentId"] == by_ext["m1"]["id"]
    tree = collector.conversation_tree("conv-1", product_id="prod-1")
    root = next(n for n in tree if n["externalMessageId"] == "m1")
    assert [c["externalMessageId"] for c in root["children"]] == ["m2", "m3", "m6", "m7"]
    prompt = conv["prompt"]
    assert [c["externalComponentId"] for c in prompt["components"]] == ["persona", None]
    assert prompt["components"][0]["variables"] == ["name", "customer"]


def test_response_matches_our_schema_and_org_linked(collector):
    r = post(collector, body("c", externalOrganizationId="acme"))
    assert r.status_code == 200
    parsed = CreateMessageResponse.model_validate(r.json())
    assert parsed.success
    assert parsed.messages[0].status == "created"
    r = post(collector, {**body("c2"), "externalUserId": "u1"})
    assert r.status_code == 200
    assert collector.counts()["organizations"] == 1
    convs = collector.conversations(external_organization_id="acme")
    assert {c["externalConversationId"] for c in convs} == {"c"}
    # the user is linked to the org, so a later conversation without org still lists by user
    assert {
        c["externalConversationId"] for c in collector.conversations(external_user_id="u1")
    } == {"c", "c2"}


# -- semantics ------------------------------------------------------------------------------


def test_dedup_inside_one_request_and_sequential_times(collector):
    msgs = [
        {"role": "user", "content": "a", "externalMessageId": "x"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "a again", "externalMessageId": "x"},
        {"role": "assistant", "content": "c", "createdAt": "2030-01-01T00:00:00+02:00"},
        {"role": "user", "content": "d"},
    ]
    r = post(collector, body("d", *msgs)).json()
    assert [m["status"] for m in r["messages"]] == [
        "created",
        "created",
        "deduplicated",
        "created",
        "created",
    ]
    assert r["messages"][2]["messageId"] == r["messages"][0]["messageId"]
    stored = collector.messages("d")
    assert [m["content"] for m in stored] == ["a", "b", "d", "c"]  # c is in 2030 (UTC 22:00)
    assert stored[3]["createdAt"] == "2029-12-31T22:00:00.000000Z"
    assert stored[0]["createdAt"] < stored[1]["createdAt"] < stored[2]["createdAt"]
    # a later request without createdAt comes after everything already stamped "now"
    post(collector, body("d", {"role": "user", "content": "e"}))
    assert [m["content"] for m in collector.messages("d")][-2:] == ["e", "c"]


def test_unknown_parent_is_400_naming_it_and_stores_nothing(collector):
    r = post(
        collector,
        body(
            "p",
            {"role": "user", "content": "a", "externalMessageId": "a"},
            {"role": "assistant", "content": "b", "parentExternalMessageId": "nope"},
            {"role": "assistant", "content": "c", "parentMessageId": "also-nope"},
        ),
    )
    assert r.status_code == 400
    details = r.json()["details"]
    assert {d["path"] for d in details} == {
        "messages.1.parentExternalMessageId",
        "messages.2.parentMessageId",
    }
    assert "nope" in details[0]["message"]
    assert collector.counts()["messages"] == 0
    r = post(
        collector,
        body(
            "p",
            {"role": "user", "content": "a", "externalMessageId": "a"},
            {"role": "assistant", "content": "b", "parentExternalMessageId": "a"},
        ),
    )
    assert r.status_code == 200


def test_conversation_keys_product_scoped_and_conversation_id(collector):
    a = post(collector, body("same", productId="p1")).json()["conversationId"]
    b = post(collector, body("same", productId="p2")).json()["conversationId"]
    c = post(collector, body("same", productId="p1")).json()["conversationId"]
    assert a == c != b
    only_product = {"externalUserId": "u", "productId": "p1", "messages": [{"role": "user"}]}
    d1 = post(collector, only_product).json()["conversationId"]
    d2 = post(collector, only_product).json()["conversationId"]
    assert d1 != d2
    r = post(
        collector,
        {"externalUserId": "u", "conversationId": "missing", "messages": [{"role": "user"}]},
    )
    assert r.status_code == 400
    assert r.json()["details"][0]["path"] == "conversationId"


def test_sampling_is_deterministic_and_force_sample_bypasses(collector):
    rate = 0.5
    kept = [f"k{i}" for i in range(40) if sample_fraction(f"\x1fk{i}") < rate]
    dropped = [f"k{i}" for i in range(40) if sample_fraction(f"\x1fk{i}") >= rate]
    assert kept
    assert dropped
    for conv in kept[:3] + dropped[:3]:
        for _ in range(2):
            r = post(collector, body(conv, sampleRate=rate))
            assert r.status_code == 200
            assert r.json()["success"] is True
    stored = {c["externalConversationId"] for c in collector.conversations()}
    assert stored == set(kept[:3])
    assert post(collector, body(dropped[0], sampleRate=rate)).json()["messages"] == []
    post(collector, body(dropped[0], sampleRate=rate, forceSample=True))
    assert len(collector.messages(dropped[0])) == 1
    assert post(collector, body("z", sampleRate=0.0)).json()["messages"] == []


def test_system_prompt_string_object_and_stable_component_ids(collector):
    r1 = post(collector, body("s1", systemPrompt="Be brief.")).json()
    assert len(r1["systemPromptComponentIds"]) == 1
    r2 = post(collector, body("s2", systemPrompt="Be brief.")).json()
    assert r2["systemPromptPromptId"] == r1["systemPromptPromptId"]
    assert r2["systemPromptComponentIds"] == r1["systemPromptComponentIds"]
    # object with content: a different prompt id per content, stable per content
    r3 = post(collector, body("s3", systemPrompt={"content": "Be kind."})).json()
    assert r3["systemPromptPromptId"] != r1["systemPromptPromptId"]
    # externalComponentId keeps the component id stable even when its text changes
    p = {"externalPromptId": "ep", "components": [{"content": "v1", "externalComponentId": "c"}]}
    r4 = post(collector, body("s4", systemPrompt=p)).json()
    p["components"][0]["content"] = "v2"
    r5 = post(collector, body("s5", systemPrompt=p)).json()
    assert r4["systemPromptComponentIds"] == r5["systemPromptComponentIds"]
    assert r4["systemPromptPromptId"] == r5["systemPromptPromptId"]
    prompts = httpx.get(collector.base_url + "/prompts").json()["prompts"]
    ep = next(x for x in prompts if x["externalPromptId"] == "ep")
    assert ep["components"][0]["content"] == "v2"
    # content and components together is a validation error
    r = post(collector, body("s6", systemPrompt={"content": "x", "components": [{"content": "y"}]}))
    assert r.status_code == 400
    r = post(collector, body("s7", systemPrompt={"externalPromptId": "never-seen"}))
    assert r.status_code == 400
    assert "never-seen" in r.text


def test_template_match_repeated_placeholder_and_no_match(collector):
    tpl = {"components": [{"content": "Hi {{user}}! Bye {{user}}, from {{team}}."}]}
    pid = post(collector, body("t1", systemPrompt=tpl)).json()["systemPromptPromptId"]
    r = post(collector, body("t2", systemPrompt="Hi Ann! Bye Ann, from Ops.")).json()
    assert r["templateMatch"] == {
        "matched": True,
        "confidence": "high",
        "detectedVariables": {"user": "Ann", "team": "Ops"},
        "promptId": pid,
    }
    r = post(collector, body("t3", systemPrompt="Hi Ann! Bye Bob, from Ops.")).json()
    assert "templateMatch" not in r
    assert r["systemPromptPromptId"] != pid


def test_read_endpoints_filter_paginate_tree(collector):
    for i in range(5):
        post(collector, {**body(f"r{i}"), "externalUserId": f"user{i % 2}", "productId": "p"})
    r = httpx.get(collector.base_url + "/conversations", params={"limit": 2}).json()
    assert r["total"] == 5
    assert [c["externalConversationId"] for c in r["conversations"]] == ["r4", "r3"]
    r = httpx.get(collector.base_url + "/conversations", params={"limit": 2, "offset": 4}).json()
    assert [c["externalConversationId"] for c in r["conversations"]] == ["r0"]
    r = httpx.get(
        collector.base_url + "/conversations", params={"externalUserId": "user1", "productId": "p"}
    ).json()
    assert [c["externalConversationId"] for c in r["conversations"]] == ["r3", "r1"]
    assert (
        httpx.get(collector.base_url + "/conversations", params={"limit": "x"}).status_code == 400
    )
    post(
        collector,
        body(
            "tree",
            {"role": "user", "content": "q", "externalMessageId": "q"},
            {
                "messageType": "tool_call",
                "toolName": "t",
                "externalMessageId": "t",
                "parentExternalMessageId": "q",
            },
            {"messageType": "observation", "parentExternalMessageId": "t"},
        ),
    )
    one = httpx.get(collector.base_url + "/conversations/tree").json()
    assert one["messages"][0]["externalMessageId"] == "q"
    assert one["messages"][0]["children"][0]["children"][0]["messageType"] == "observation"
    assert httpx.get(collector.base_url + "/conversations/nope").status_code == 404


# -- auth and limits --------------------------------------------------------------------------


def test_api_key_required_when_configured():
    with start_collector(api_key="s3cret") as col:
        assert post(col, body()).status_code == 401
        assert post(col, body(), headers={"authorization": "Bearer wrong"}).status_code == 401
        assert post(col, body(), headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(col.base_url + "/conversations").status_code == 401
        assert col.counts()["messages"] == 1
        # the viewer asks the browser for the key (Basic auth, key as password)
        page = httpx.get(col.url + "/")
        assert page.status_code == 401
        assert page.headers["www-authenticate"].startswith("Basic")
        assert httpx.get(col.url + "/", auth=("me", "wrong")).status_code == 401
        page = httpx.get(col.url + "/", auth=("me", "s3cret"))
        assert page.status_code == 200
        assert "1 messages" in page.text


def test_body_size_limit_413_declared_and_streamed():
    with start_collector(max_body_bytes=50_000) as col:
        big = json.dumps(body("big", {"role": "user", "content": "x" * 60_000}))
        assert post(col, big, headers={"content-type": "application/json"}).status_code == 413

        def chunks():  # no Content-Length: chunked transfer
            yield big[:1000].encode()
            yield big[1000:].encode()

        r = httpx.post(col.base_url + "/messages", content=chunks(), timeout=30)
        assert r.status_code == 413
        assert col.counts()["messages"] == 0
    assert MAX_BODY_BYTES == 10 * 1024 * 1024


# -- robustness ---------------------------------------------------------------------------------


MALFORMED: list[Any] = [
    b"",
    b"not json",
    b'{"externalUserId": "u", ',
    b"\xff\xfe\xfd{}",
    b'{"externalUserId": "\xc3\x28"}',
    b"[1, 2, 3]",
    b"null",
    b'"a string"',
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps({"externalUserId": "u", "externalConversationId": "c", "messages": []}),
    json.dumps({"externalUserId": 5, "externalConversationId": ["c"], "messages": "no"}),
    json.dumps({"externalUserId": "u", "messages": [{"role": "user"}]}),
    json.dumps(body("c", {"role": "user", "messageType": "thought"})),
    json.dumps(body("c", {"messageType": "tool_call"})),
    json.dumps(body("c", {"role": "user", "input": "bare string"})),
    json.dumps(body("c", {"role": "user", "createdAt": "yesterday-ish"})),
    json.dumps(body("c", {"role": "user", "createdAt": "9999-12-31T23:59:59-05:00"})),
    json.dumps(body("c", sampleRate=7)),
    json.dumps(body("c", unknownField=1)),
    '{"externalUserId": "u", "externalConversationId": "c", "messages": [{"role": "user", '
    '"properties": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}]}",
    '{"externalUserId": "u", "externalConversationId": "c", "messages": [{"role": "user", '
    '"content": "\\ud800"}]}',
]


def test_malformed_bodies_never_500_and_never_corrupt(collector):
    ok = post(
        collector, body("keep", {"role": "user", "content": "safe", "externalMessageId": "k"})
    )
    assert ok.status_code == 200
    for raw in MALFORMED:
        r = post(collector, raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 or r.status_code == 200, (raw[:80], r.status_code)
        assert r.status_code != 500
        if r.status_code == 400:
            assert r.json()["details"], raw[:80]
    # huge strings and 10k messages are accepted whole
    r = post(collector, body("huge", {"role": "user", "content": "é" * 2_000_000}))
    assert r.status_code == 200
    many = [{"role": "user", "content": str(i), "externalMessageId": str(i)} for i in range(10_000)]
    r = post(collector, body("many", *many))
    assert r.status_code == 200
    assert len(r.json()["messages"]) == 10_000
    stored = collector.messages("keep")
    assert [(m["content"], m["externalMessageId"]) for m in stored] == [("safe", "k")]
    assert len(collector.messages("many")) == 10_000
    assert len(collector.messages("huge")[0]["content"]) == 2_000_000
    page = httpx.get(collector.url + "/?c=many", timeout=30)
    assert page.status_code == 200
    assert page.text.count('class="msg ') == 2000
    assert "showing the first 2000 of 10000 messages" in page.text
    assert httpx.get(collector.url + "/healthz").json() == {"ok": True}


def test_every_validation_problem_is_listed(collector):
    r = post(
        collector, {"messages": [{"role": "bot"}, {"messageType": "tool_call"}], "sampleRate": 2}
    )
    assert r.status_code == 400
    paths = {d["path"] for d in r.json()["details"]}
    assert {"externalUserId", "messages.0.role", "messages.1", "sampleRate"} <= paths


def test_concurrent_writers_keep_counts_exact(collector):
    threads, per_thread, batch = 8, 25, 4
    errors: list[Any] = []

    def writer(n: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(per_thread):
                msgs = [
                    {"role": "user", "content": f"{n}-{i}-{k}", "externalMessageId": f"{n}-{i}-{k}"}
                    for k in range(batch)
                ]
                # every thread also writes one shared conversation, with one shared duplicate
                for conv in (f"w{n}", "shared"):
                    r = http.post(
                        collector.base_url + "/messages",
                        json={
                            "externalUserId": f"u{n}",
                            "externalConversationId": conv,
                            "externalOrganizationId": "org",
                            "messages": [*msgs, {"role": "user", "externalMessageId": "dup"}],
                        },
                    )
                    if r.status_code != 200:
                        errors.append(r.text)

    ts = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    counts = collector.counts()
    assert counts["conversations"] == threads + 1
    assert counts["users"] == threads
    assert counts["organizations"] == 1
    per_conv = per_thread * batch + 1
    assert counts["messages"] == threads * per_conv + (threads * per_thread * batch + 1)
    assert len(collector.messages("shared")) == threads * per_thread * batch + 1


# -- our uploader into the collector, with a restart mid-stream ------------------------------


def test_uploader_delivers_agentic_turn(collector):
    import gf_integrations as gf

    client = gf.GreenflashClient(base_url=collector.base_url, flush_interval=0.02)
    try:
        conv = client.resolve(fallback_conversation_id="agent-1")
        user = {"role": "user", "content": "weather?"}
        call = {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "t1", "name": "weather", "arguments": {"city": "Oslo"}}],
        }
        client.record(
            LLMCall(
                conv,
                "r1",
                messages=[{"role": "system", "content": "sys"}, user],
                reply=call,
                model="m",
            )
        )
        client.record(ToolResult(conv, "x", "weather", "t1", output="rain"))
        client.record(
            LLMCall(
                conv,
                "r2",
                messages=[user, call],
                reply={"role": "assistant", "content": "Rain."},
                model="m",
            )
        )
        assert client.flush(5)
        assert client.stats()["dropped_fatal"] == 0
    finally:
        client.shutdown(2)
    msgs = collector.messages("agent-1")
    assert [m["messageType"] for m in msgs] == [
        "user_message",
        "tool_call",
        "observation",
        "final_response",
    ]
    assert msgs[2]["parentId"] == msgs[1]["id"]
    assert collector.conversation("agent-1")["prompt"]["components"][0]["content"] == "sys"


def test_restart_mid_stream_loses_nothing(tmp_path):
    import gf_integrations as gf
    from gf_integrations.core.events import UserInput

    db = tmp_path / "c.sqlite3"
    col = start_collector(db_path=db)
    port = col.port
    client = gf.GreenflashClient(
        base_url=col.base_url, flush_interval=0.01, max_batch_messages=5, max_backoff=0.2
    )
    try:
        conv = client.resolve(fallback_conversation_id="restart")
        for i in range(30):
            client.record(UserInput(conv, f"k{i}", f"m{i}"))
        assert client.flush(5)
        col.stop()  # down: the next events must be retried, not lost
        for i in range(30, 60):
            client.record(UserInput(conv, f"k{i}", f"m{i}"))
        assert not client.flush(0.3)
        col = start_collector(db_path=db, port=port)
        for i in range(60, 80):
            client.record(UserInput(conv, f"k{i}", f"m{i}"))
        assert client.flush(10)
        contents = [m["content"] for m in col.messages("restart")]
        assert contents == [f"m{i}" for i in range(80)]
        assert client.stats()["retried"] >= 1
    finally:
        client.shutdown(1)
        col.stop()


def test_viewer_shows_each_answers_cost_and_the_conversations_total_escaped(collector):
    import re

    hostile = '<script>window.__pwned = 1</script>"'
    priced = {"table": "genai-prices", "version": "0.2.5"}
    r = post(
        collector,
        body(
            "costs",
            {"role": "user", "content": "hi", "externalMessageId": "u"},
            {
                "role": "assistant",
                "content": "one",
                "externalMessageId": "a1",
                "properties": {
                    "usage": {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18},
                    "costUsd": 0.0000925,
                    "pricing": priced,
                },
            },
            {
                "role": "assistant",
                "content": "two",
                "externalMessageId": "a2",
                "properties": {
                    "usage": {"inputTokens": 1000, "outputTokens": 500, "totalTokens": 1500},
                    "costUsd": 0.0075,
                    "pricing": {"table": hostile, "version": hostile},
                },
            },
            {  # a model the table does not know: usage, no cost
                "role": "assistant",
                "content": "three",
                "externalMessageId": "a3",
                "properties": {"usage": {"inputTokens": 5, "outputTokens": 5, "totalTokens": 10}},
            },
            {  # not a number: not shown, not summed
                "role": "assistant",
                "content": "four",
                "externalMessageId": "a4",
                "properties": {"costUsd": "<b>9</b>"},
            },
        ),
    )
    assert r.status_code == 200, r.text
    page = httpx.get(collector.url + "/?c=costs", timeout=30).text
    chips = re.findall(r'<span class="chip chip-cost" title="([^"]*)">([^<]*)</span>', page)
    assert chips == [
        ("estimated cost (genai-prices 0.2.5)", "$0.0000925"),
        (
            "estimated cost (&lt;script&gt;window.__pwned = 1&lt;/script&gt;&quot; "
            "&lt;script&gt;window.__pwned = 1&lt;/script&gt;&quot;)",
            "$0.0075",
        ),
    ]
    # the conversation: every token, the priced calls' cost, and the unpriced one said
    total = re.search(r'<span class="chip chip-cost conv-cost"[^>]*>([^<]*)</span>', page)
    assert total is not None
    assert total.group(1) == "$0.00759 + 1 unpriced"
    usage = re.search(r'<span class="chip chip-usage conv-usage"[^>]*>([^<]*)</span>', page)
    assert usage is not None
    assert usage.group(1) == "in 1016 · out 512 · total 1528 tok"
    assert "<script>" not in page
    assert "<b>9</b>" not in page
    # a shown cost is not repeated under properties; one that is not a number stays there
    assert page.count("costUsd") == 1
    assert "&quot;costUsd&quot;: &quot;&lt;b&gt;9&lt;/b&gt;&quot;" in page
