"""Cost estimates (the ``prices`` extra): what reaches the local collector.

The wrappers run over their fake provider servers (helpers/fake_openai.py,
fake_anthropic.py), which report the same call each in its own way: 11 input tokens, 4 of
them read from the prompt cache and 3 written to it, 7 output tokens (2 of reasoning). The
expected cost is worked out here by hand from the table's own rates, so a cached token
counted twice or dropped changes it. Runs at genai-prices' floor and newest (the ``prices``
matrix cell) and in the locked suite.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices import data_snapshot
from genai_prices.data import providers
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import TieredPrices

import gf_integrations as gf
from gf_integrations.anthropic import wrap_anthropic
from gf_integrations.core.pricing import Pricing
from gf_integrations.openai import wrap_openai
from helpers.fake_anthropic import FakeAnthropic, text
from helpers.fake_openai import FakeOpenAI
from helpers.usage import SAME_CALL
from openai import OpenAI

SRC = Path(__file__).resolve().parents[2] / "src"
PRICING = {"table": "genai-prices", "version": genai_prices.__version__}


def by_hand(model: str, provider_id: str, usage: dict[str, int], at: dt.datetime) -> float:
    """The cost of ``usage`` (our vocabulary) from the table's rates for ``model`` at ``at``:
    the uncached input at the input rate, cache reads and writes at theirs (at the input
    rate where the model has none), every output token at the output rate."""
    _, info = DataSnapshot(providers=providers, from_auto_update=False).find_provider_model(
        model, None, provider_id, None
    )
    rates = info.get_prices(at)

    def rate(name: str) -> Decimal | None:
        value = getattr(rates, name, None)
        return getattr(value, "base", value)  # tiered: a few tokens are below the first tier

    inp, out, read = rate("input_mtok"), rate("output_mtok"), rate("cache_read_mtok")
    write = rate("cache_write_mtok")
    # a cheaper cache read is what makes a cached token counted twice, or dropped, visible
    assert inp is not None
    assert out is not None
    assert read is not None
    assert read < inp
    reads, writes = usage["cacheReadTokens"], usage["cacheWriteTokens"]
    total = (
        (usage["inputTokens"] - reads - writes) * inp
        + reads * read
        + writes * (write if write is not None else inp)
        + usage["outputTokens"] * out
    )
    return float(total / 1_000_000)


def _at(message: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(message["createdAt"].replace("Z", "+00:00"))


def wrapped_openai(client: gf.GreenflashClient, conversation: str, *replies: str) -> OpenAI:
    """An OpenAI client on a fake OpenAI API answering ``replies``, recording into
    ``client``."""
    fake = FakeOpenAI(default_text="Lisbon is mild in March.")
    for reply in replies:
        fake.reply_text(reply)
    return wrap_openai(
        OpenAI(api_key="sk-test", base_url=fake.base_url, http_client=fake.http_client()),
        client=client,
        external_conversation_id=conversation,
    )


def ask(client: OpenAI, model: str, content: str = "Lisbon in March?") -> None:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])


def run_python(code: str) -> str:
    """``code``'s output in a fresh interpreter (nothing imported yet) on our source."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def gfc(collector):
    client = gf.GreenflashClient(base_url=collector.base_url, flush_interval=0.05)
    yield client
    client.shutdown(timeout=2)


def test_wrap_openai_answer_carries_its_cost(collector, gfc):
    ask(wrapped_openai(gfc, "cost-openai"), "gpt-4o")
    assert gfc.flush(10)
    user, answer = collector.messages("cost-openai")
    assert answer["model"] == "gpt-4o-2024-08-06"
    props = answer["properties"]
    assert props["usage"] == SAME_CALL
    assert props["costUsd"] == pytest.approx(
        by_hand("gpt-4o-2024-08-06", "openai", SAME_CALL, _at(answer)), rel=1e-9
    )
    assert props["pricing"] == PRICING
    assert "costUsd" not in (user.get("properties") or {})
    assert gfc.stats()["cost_unknown_model"] == 0


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_wrap_anthropic_answer_carries_its_cost(collector, gfc, streamed):
    fake = FakeAnthropic()
    fake.queue(text("Mild and sunny."))
    client = wrap_anthropic(fake.client(), client=gfc, external_conversation_id="cost-claude")
    request: dict[str, Any] = {
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Lisbon in March?"}],
    }
    if streamed:
        with client.messages.stream(**request) as stream:
            stream.get_final_message()
    else:
        client.messages.create(**request)
    assert gfc.flush(10)
    _, answer = collector.messages("cost-claude")
    props = answer["properties"]
    # Anthropic's input_tokens (4) leaves the cache out: the table is handed all 11
    assert props["usage"] == SAME_CALL
    assert props["costUsd"] == pytest.approx(
        by_hand("claude-3-5-haiku-20241022", "anthropic", SAME_CALL, _at(answer)), rel=1e-9
    )
    assert props["pricing"] == PRICING


def test_a_model_the_table_does_not_know_gets_no_cost_and_is_counted(collector, gfc):
    client = wrapped_openai(gfc, "cost-unknown", "first", "second")
    for content in ("one", "two"):
        ask(client, "gf-fine-tune-nobody-prices", content)
    assert gfc.flush(10)
    answers = [m for m in collector.messages("cost-unknown") if m["role"] == "assistant"]
    assert [m["content"] for m in answers] == ["first", "second"]
    for answer in answers:
        assert answer["properties"]["usage"] == SAME_CALL  # the answer and its usage stay
        assert "costUsd" not in answer["properties"]
        assert "pricing" not in answer["properties"]
    assert gfc.stats()["cost_unknown_model"] == 2


def test_estimate_cost_off_prices_nothing(collector):
    client = gf.GreenflashClient(
        base_url=collector.base_url, flush_interval=0.05, estimate_cost=False
    )
    try:
        ask(wrapped_openai(client, "cost-off"), "gpt-4o")
        assert client.flush(10)
    finally:
        client.shutdown(timeout=2)
    _, answer = collector.messages("cost-off")
    assert answer["properties"]["usage"] == SAME_CALL
    assert "costUsd" not in answer["properties"]


def test_the_bundled_table_prices_even_when_a_host_updater_replaced_the_global_one():
    # a host running genai-prices' UpdatePrices swaps the global table for a fetched one;
    # ours stays the bundled table, whose version pricing.version names
    now = dt.datetime.now(dt.timezone.utc)
    data_snapshot.set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    try:
        with pytest.raises(LookupError):
            genai_prices.calc_price(genai_prices.Usage(input_tokens=1), "gpt-4o")
        priced = Pricing().price(SAME_CALL, "gpt-4o", "openai", now)
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert priced == {"costUsd": by_hand("gpt-4o", "openai", SAME_CALL, now), "pricing": PRICING}


CLAUDE = "claude-3-5-haiku-20241022"
BEDROCK_CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.mark.parametrize(
    ("provider", "model", "table_id"),
    [
        ("openai", "gpt-4o", "openai"),
        ("azure", "gpt-4o", "azure"),  # wrap_openai(AzureOpenAI), LangChain, LiteLLM
        ("az.ai.openai", "gpt-4o", "azure"),  # OTel's names for Azure OpenAI
        ("azure.ai.openai", "gpt-4o", "azure"),
        ("litellm", "gpt-4o", "openai"),
        (None, "gpt-4o", "openai"),  # no provider: the model's name tells
        ("anthropic", CLAUDE, "anthropic"),
        ("foundry", CLAUDE, "azure"),  # AnthropicFoundry: azure falls back to anthropic
        ("vertex", CLAUDE, "google"),  # AnthropicVertex
        ("bedrock", BEDROCK_CLAUDE, "aws"),  # wrap_bedrock, AnthropicBedrock
        ("aws.bedrock", BEDROCK_CLAUDE, "aws"),  # OTel
    ],
)
def test_each_integrations_provider_name_reaches_its_table(provider, model, table_id):
    now = dt.datetime.now(dt.timezone.utc)
    cost = Pricing().price(SAME_CALL, model, provider, now)
    assert cost is not None
    assert cost["costUsd"] == pytest.approx(by_hand(model, table_id, SAME_CALL, now), rel=1e-9)


def test_what_is_not_priced():
    now = dt.datetime.now(dt.timezone.utc)
    pricing = Pricing()
    # a provider the table does not list (a local server) is not priced by the model's name
    assert pricing.price(SAME_CALL, "gpt-4o", "ollama", now) is None
    assert pricing.unknown_model == 1
    # no model, or no token count: nothing to price
    assert pricing.price(SAME_CALL, None, "openai", now) is None
    assert pricing.price({"totalTokens": 5}, "gpt-4o", "openai", now) is None
    # usage the table rejects (more cached than sent) loses the cost, never raises
    assert pricing.price({"inputTokens": 2, "cacheReadTokens": 5}, "gpt-4o", "openai", now) is None
    # counted as unknown: the local server's model and the answer naming no model
    assert pricing.unknown_model == 2


def _usages() -> list[dict[str, int]]:
    rnd = random.Random(24)
    usages = [SAME_CALL, {"inputTokens": 1000, "outputTokens": 0}, {"outputTokens": 5}, {}]
    for _ in range(4):
        inp, out = rnd.randint(0, 300_000), rnd.randint(0, 60_000)
        read = rnd.randint(0, inp)
        usages.append(
            {
                "inputTokens": inp,
                "outputTokens": out,
                "cacheReadTokens": read,
                "cacheWriteTokens": rnd.randint(0, inp - read),
                "reasoningTokens": rnd.randint(0, out),
            }
        )
    return usages


def test_per_token_rates_price_every_model_exactly_as_genai_prices_does():
    # the fast path (a flat-priced model's rates, asked once) against genai-prices' own
    # calculation, for every model of the installed table: the same Decimal, or the same
    # refusal
    now = dt.datetime.now(dt.timezone.utc)
    table = Pricing(max_models=1 << 16)._load()
    assert table is not None
    usages, fast, checked = _usages(), 0, 0
    for provider in table.providers:
        for info in provider.models:
            fast += table._rates(provider, info, now, 0) is not None
            # and on both sides of each price tier's start (tiers go by the input count)
            edges = [
                {"inputTokens": tier.start + d, "outputTokens": 10, "cacheReadTokens": 3}
                for value in vars(info.get_prices(now)).values()
                if isinstance(value, TieredPrices)
                for tier in value.tiers
                for d in (0, 1, 2)
            ]
            for usage in usages + edges:
                try:
                    usage_obj = table.usage(usage)
                    expected = info.calc_price(usage_obj, provider, genai_request_timestamp=now)
                except Exception as exc:
                    with pytest.raises(type(exc)):
                        table.cost((provider, info), usage, now)
                    continue
                assert table.cost((provider, info), usage, now) == expected.total_price, (
                    provider.id,
                    info.id,
                    usage,
                )
                checked += 1
    assert fast > 100  # most models have flat prices: the fast path is what was checked
    assert checked > 1000


def test_lookups_are_cached_in_a_bounded_map():
    now = dt.datetime.now(dt.timezone.utc)
    pricing = Pricing(max_models=4)
    for n in range(50):
        pricing.price(SAME_CALL, f"gf-unknown-{n}", "openai", now)
    assert pricing.unknown_model == 50
    assert len(pricing._models) == 4
    # the table's own memo is rebuilt past 4 x the cap: what it holds stays bounded
    assert pricing._table is not None
    assert pricing._table.lookups <= 16


# What building a client and pricing may do: import genai-prices (and its httpx2) on the
# constructing thread, never on the worker (a module half-imported there broke the OpenAI
# SDK's calls on the host's threads, which look httpx2 up in sys.modules); open no socket,
# start no thread, swap no global table.
NO_FETCH = textwrap.dedent(
    """
    import datetime as dt, sys, threading

    events, importers = [], {}

    def audit(event, args):
        if event.startswith(("socket.", "urllib.", "http.client.")):
            events.append(event)
        elif event == "import" and args[0] in ("genai_prices", "httpx2"):
            importers.setdefault(args[0], threading.current_thread().name)

    sys.addaudithook(audit)
    import gf_integrations as gf

    assert "genai_prices" not in sys.modules, "imported by import gf_integrations"
    client = gf.GreenflashClient(base_url="http://127.0.0.1:9", sender="thread")
    # (genai-prices before 0.0.70 imports httpx, already imported, instead of httpx2)
    assert importers.get("genai_prices") == "MainThread", importers
    assert set(importers.values()) == {"MainThread"}, importers
    threads = set(threading.enumerate())
    usage = {"inputTokens": 11, "outputTokens": 7, "cacheReadTokens": 4, "cacheWriteTokens": 3}
    cost = client.mapper.pricing.price(usage, "gpt-4o", "openai", dt.datetime.now(dt.timezone.utc))
    assert cost and cost["costUsd"] > 0, cost

    from genai_prices import data_snapshot
    assert data_snapshot._custom_snapshot is None, "an updated table was installed"
    assert set(threading.enumerate()) <= threads, "a thread was started"
    client.shutdown(timeout=0.1)
    print("network events:", events)
    """
)


def test_building_a_client_and_pricing_never_touch_the_network():
    assert run_python(NO_FETCH) == "network events: []"


def test_estimate_cost_off_imports_no_price_table():
    code = (
        "import sys, gf_integrations as gf\n"
        "c = gf.GreenflashClient(base_url='http://127.0.0.1:9', sender='thread',"
        " estimate_cost=False)\n"
        "c.shutdown(timeout=0.1)\n"
        "print('genai_prices' in sys.modules)"
    )
    assert run_python(code) == "False"
