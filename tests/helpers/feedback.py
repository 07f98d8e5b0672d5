"""What the feedback tests share (tests/core/test_feedback.py and each integration's
test_feedback_<integration>.py): a default client pointed at a real collector, and reading
back which answers were rated."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gf_integrations as gf

PRODUCT = "shop"


@contextmanager
def default_client(collector: Any) -> Iterator[gf.GreenflashClient]:
    """The default client, pointed at ``collector``, with a product id; shut down after."""
    import gf_integrations.client as client_mod

    c = gf.GreenflashClient(
        base_url=collector.base_url, product_id=PRODUCT, flush_interval=0.05, sender="thread"
    )
    previous, client_mod._default = client_mod._default, c
    try:
        yield c
    finally:
        client_mod._default = previous
        c.shutdown(timeout=2)


def rated(col: Any, conv: str) -> list[tuple[str | None, float, str | None]]:
    """(content of the rated message, or None for the conversation, rating, feedback)."""
    by_id = {m["id"]: m for m in col.messages(conv, PRODUCT)}
    return [
        (by_id[r["messageId"]]["content"] if r["messageId"] else None, r["rating"], r["feedback"])
        for r in col.ratings(conv, PRODUCT)
    ]
