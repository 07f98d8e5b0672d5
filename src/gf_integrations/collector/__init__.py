"""The local collector: a Greenflash-compatible ingest server on SQLite, with a viewer.

Needs the ``local`` extra (``pip install 'gf-integrations[local]'``). Quick use::

    from gf_integrations.collector import start_collector

    with start_collector() as col:          # temp database, free loopback port
        client = GreenflashClient(base_url=col.base_url)
        ...
        client.flush()
        print(col.messages("my-conversation"))
        print("viewer:", col.url)
"""

from __future__ import annotations

from ._deps import INSTALL_HINT, require

require()

from .app import MAX_BODY_BYTES, create_app  # noqa: E402
from .runner import RunningCollector, serve, start_collector  # noqa: E402
from .store import IngestError, Store  # noqa: E402

__all__ = [
    "INSTALL_HINT",
    "MAX_BODY_BYTES",
    "IngestError",
    "RunningCollector",
    "Store",
    "create_app",
    "serve",
    "start_collector",
]
