"""Cost estimates: ``properties.costUsd`` of a model answer, from genai-prices' table.

With the ``prices`` extra installed (``genai-prices``, Pydantic's maintained price table),
:meth:`Pricing.price` turns an answer's usage in the one vocabulary (core/usage.py), its
model and its provider into::

    {"costUsd": 0.0000925,                 # USD, a float
     "pricing": {"table": "genai-prices", "version": "0.2.5"}}

It runs where mapping runs (the worker) and never touches the network: the table is
the one bundled in the installed package. genai-prices' ``UpdatePrices`` (which downloads a
newer table) is never started, and a table that a host's own ``UpdatePrices`` fetched is
not used either, so ``pricing.version`` always names the table that priced the answer.
genai-prices is imported when a client is built (:meth:`Pricing.preload`), never at
``import gf_integrations`` and never on the worker (why: :meth:`Pricing.preload`).

genai-prices counts like our vocabulary: its ``input_tokens`` holds the cache reads and
writes, which it prices at their own rates (or, for a model without a cache-write price,
at the input rate), and its ``output_tokens`` holds the reasoning. A model the table does
not know gets no cost and is counted (``stats()["cost_unknown_model"]``); any other
failure loses the cost, never the answer. Lookups are cached per (provider, model) in a
bounded map, and so are a model's rates per token, asked of genai-prices once per price
period and tier (:meth:`_Table._rates`): ~3 us an answer, where its own calculation takes
~80 us (0.2); tests/prices checks the two agree on every model of the installed table.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import warnings
from collections.abc import Mapping
from typing import Any

from ..common.bounded import BoundedMap
from ..common.once import OnceLog
from .usage import CACHE_READ, CACHE_WRITE, INPUT, OUTPUT, REASONING

__all__ = ["TABLE", "Pricing"]

#: the ``pricing.table`` of every estimate
TABLE = "genai-prices"

# The provider names our integrations record (the wrappers', LangChain's ls_provider,
# LiteLLM's custom_llm_provider, OTel's gen_ai.provider.name / gen_ai.system) that
# genai-prices' own provider matching misses or takes for another provider. The rest
# ("openai", "anthropic", "bedrock", "aws.bedrock", "vertex_ai", "gemini", "google_genai",
# "mistralai", "together_ai", "groq", ...) it matches itself.
_PROVIDER_IDS = {
    "azure": "azure",
    "azure_openai": "azure",
    "azure_ai": "azure",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    # AnthropicFoundry: Claude on Azure AI Foundry (genai-prices' azure falls back to
    # anthropic's models)
    "foundry": "azure",
    "gcp.gen_ai": "google",
    "x_ai": "x-ai",
    "fireworks_ai": "fireworks",
}

# an entry of the lookup cache for a model the table does not know
_UNKNOWN: tuple[Any, ...] = ()

# a model's cost of no token, then of one token of each kind: input (uncached), cache read,
# cache write, output, reasoning (Decimals, USD)
_Rates = tuple[Any, Any, Any, Any, Any, Any]
# a model's prices for a period, the input counts its tiers start above, {tier: its rates}
_Tiers = tuple[Any, list[int], dict[int, "_Rates | None"]]


class _Table:
    """genai-prices, loaded: its bundled table, its Usage type and its version."""

    __slots__ = (
        "knows_reasoning",
        "label",
        "lookups",
        "providers",
        "rates",
        "snapshot",
        "snapshot_cls",
        "tiered_cls",
        "usage_cls",
    )

    def __init__(self, max_models: int) -> None:
        import genai_prices
        from genai_prices.data import providers
        from genai_prices.data_snapshot import DataSnapshot
        from genai_prices.types import TieredPrices

        self.usage_cls: Any = genai_prices.Usage
        self.tiered_cls: Any = TieredPrices
        # id(the table's prices of a model for a period) -> its tiers' rates
        self.rates: BoundedMap[int, _Tiers] = BoundedMap(max_models, lru=True)
        self.providers = providers
        self.snapshot_cls: Any = DataSnapshot
        # our own snapshot of the bundled table: genai_prices.calc_price would use the one
        # a host's UpdatePrices fetched, whose version we could not name
        self.snapshot: Any = DataSnapshot(providers=providers, from_auto_update=False)
        self.lookups = 0
        self.label = {"table": TABLE, "version": str(genai_prices.__version__)}
        self.knows_reasoning = _knows_reasoning(self.usage_cls)

    def usage(self, counts: Mapping[str, int]) -> Any:
        """Our counts as a genai-prices ``Usage`` (the same inclusive counting)."""
        fields = {
            "input_tokens": counts.get(INPUT),
            "output_tokens": counts.get(OUTPUT),
            "cache_read_tokens": counts.get(CACHE_READ),
            "cache_write_tokens": counts.get(CACHE_WRITE),
        }
        if self.knows_reasoning and counts.get(REASONING) is not None:
            # a part of output_tokens, priced apart only where the table has a rate for it
            fields["output_reasoning_tokens"] = counts[REASONING]
        return self.usage_cls(**{k: v for k, v in fields.items() if v is not None})

    def cost(self, found: tuple[Any, ...], counts: Mapping[str, int], at: dt.datetime) -> Any:
        """The table's price of ``counts`` (a Decimal, USD): from the model's per-token
        rates (:meth:`_rates`), else by genai-prices' own calculation."""
        provider, info = found
        inp, out = counts.get(INPUT, 0), counts.get(OUTPUT, 0)
        read, write = counts.get(CACHE_READ, 0), counts.get(CACHE_WRITE, 0)
        reasoning = counts.get(REASONING, 0)
        rates = self._rates(provider, info, at, inp)
        if rates is None or read + write > inp or reasoning > out:
            usage = self.usage(counts)
            return info.calc_price(usage, provider, genai_request_timestamp=at).total_price
        base, per_input, per_read, per_write, per_output, per_reasoning = rates
        return (
            base
            + (inp - read - write) * per_input
            + read * per_read
            + write * per_write
            + (out - reasoning) * per_output
            + reasoning * per_reasoning
        )

    def _rates(self, provider: Any, info: Any, at: dt.datetime, inp: int) -> _Rates | None:
        """The model's price per token of each kind for an answer of ``inp`` input tokens
        at ``at``; None where they cannot be had (genai-prices then prices the answer).

        genai-prices' calculation is ~80 us an answer (0.2), and a model's price is affine
        in the token counts within a price tier (tiers are chosen by the input count): what
        it charges for no token and for one token of each kind, asked once per model, price
        period and tier, prices every answer after that.
        """
        prices = info.get_prices(at)
        hit = self.rates.get(id(prices))
        if hit is None or hit[0] is not prices:
            starts = sorted(
                {
                    tier.start
                    for value in vars(prices).values()
                    if isinstance(value, self.tiered_cls)
                    for tier in value.tiers
                }
            )
            hit = (prices, starts, {})
            self.rates.put(id(prices), hit)
        _, starts, tiers = hit
        tier = bisect.bisect_left(starts, inp)  # a tier applies above its start
        if tier not in tiers:
            low = starts[tier - 1] + 1 if tier else 0  # the tier's fewest input tokens
            wide = tier == len(starts) or starts[tier] > low  # room to probe low + 1
            try:
                tiers[tier] = self._probe(provider, info, at, low) if wide else None
            except Exception:  # a model whose prices want more than tokens: priced each time
                tiers[tier] = None
        return tiers[tier]

    def _probe(self, provider: Any, info: Any, at: dt.datetime, n: int) -> _Rates:
        """The rates of the tier of ``n`` input tokens (and ``n + 1``: the same tier), from
        what genai-prices charges for a few answers there."""

        def price(inp: int, **tokens: int) -> Any:
            usage = self.usage_cls(input_tokens=inp, **tokens)
            return info.calc_price(usage, provider, genai_request_timestamp=at).total_price

        at_n = price(n)
        per_input = price(n + 1) - at_n
        per_output = price(n, output_tokens=1) - at_n
        per_reasoning = (
            price(n, output_tokens=1, output_reasoning_tokens=1) - at_n
            if self.knows_reasoning
            else per_output
        )
        return (
            at_n - n * per_input,
            per_input,
            price(n + 1, cache_read_tokens=1) - at_n,
            price(n + 1, cache_write_tokens=1) - at_n,
            per_output,
            per_reasoning,
        )

    def find(self, model: str, provider_id: str | None, max_lookups: int) -> tuple[Any, ...]:
        """(provider, model info) from the table, or ``_UNKNOWN``."""
        self.lookups += 1
        if self.lookups > max_lookups:
            # the snapshot memoises every lookup (misses too, in some releases): a fresh
            # one bounds what it holds; ours is the cache that counts
            self.snapshot = self.snapshot_cls(providers=self.providers, from_auto_update=False)
            self.lookups = 1
        try:
            found = self.snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            return _UNKNOWN
        return tuple(found)


def _knows_reasoning(usage_cls: Any) -> bool:
    """True when this genai-prices' Usage takes ``output_reasoning_tokens`` (0.1.0 on)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unknown key only warns in some releases
            usage_cls(output_reasoning_tokens=0)
        return True
    except Exception:
        return False


class Pricing:
    """Prices model answers from their usage; one per mapper, used under its lock.

    ``enabled=False`` (the ``estimate_cost`` setting) or genai-prices missing: nothing is
    priced and nothing is imported. ``unknown_model`` counts the answers with usage whose
    model the table does not know (or that name no model).
    """

    def __init__(self, enabled: bool = True, *, max_models: int = 512) -> None:
        self.enabled = enabled
        self.unknown_model = 0
        self._table: _Table | None = None
        self._max_models = max_models
        self._models: BoundedMap[tuple[str, str], tuple[Any, ...]] = BoundedMap(
            max_models, lru=True
        )
        self._once = OnceLog()

    def preload(self) -> None:
        """Import genai-prices now, on the calling thread (the client's constructor).

        Not on the worker: while a module is being imported it sits half-built in
        ``sys.modules``, and the OpenAI SDK, which looks ``httpx2`` up there (genai-prices
        imports it), failed the host's calls that ran meanwhile.
        """
        if self.enabled:
            self._load()

    def _load(self) -> _Table | None:
        if self._table is None:
            try:
                self._table = _Table(self._max_models)
            except ImportError:
                self.enabled = False  # the prices extra is not installed: nothing to do
                return None
            except Exception as exc:  # a genai-prices we cannot read: no cost, said once
                self.enabled = False
                self._once.warn(
                    "load", "gf_integrations: genai-prices could not be loaded; no cost", exc=exc
                )
                return None
        return self._table

    def price(
        self,
        counts: Mapping[str, int],
        model: str | None,
        provider: str | None,
        at: dt.datetime,
    ) -> dict[str, Any] | None:
        """``{"costUsd", "pricing"}`` for one answer, or None; never raises."""
        if not self.enabled or (INPUT not in counts and OUTPUT not in counts):
            return None
        try:
            table = self._load()
            if table is None:
                return None
            found = self._lookup(table, model, provider)
            if not found:
                self.unknown_model += 1
                return None
            if at.tzinfo is None:
                at = at.replace(tzinfo=dt.timezone.utc)
            cost = float(table.cost(found, counts, at))
            if not math.isfinite(cost) or cost < 0:
                return None
            return {"costUsd": cost, "pricing": dict(table.label)}
        except Exception as exc:  # usage the table rejects (more cached than input, ...)
            self._once.warn(
                ("price", type(exc).__name__),
                "gf_integrations: an answer's cost could not be computed; it has none",
                exc=exc,
            )
            return None

    def _lookup(self, table: _Table, model: str | None, provider: str | None) -> tuple[Any, ...]:
        if not model or not isinstance(model, str):
            return _UNKNOWN
        name = provider.strip().lower() if isinstance(provider, str) and provider else ""
        key = (name, model)
        found = self._models.get(key)
        if found is None:
            provider_id = _PROVIDER_IDS.get(name, name) or None
            found = table.find(model, provider_id, self._max_models * 4)
            self._models.put(key, found)
        return found
