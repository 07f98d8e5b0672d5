"""Transport: queues, batches and ships request bodies it is given. Knows no wire format.

The unit of work is a :class:`Part`: an API ``path`` (``"/messages"``, ``"/ratings"``,
``"/events"``...), a grouping ``key``, encoded ``data`` and a ``join`` that builds the
request body from a batch of parts when it closes. Parts with the same path and key are
merged into one request (``/messages``: one conversation's messages, in order); a part
with ``key=None`` is a whole request body. Every kind of request shares one buffer, one
retry policy, one spool and one flush/shutdown.

* ``Uploader.submit(item)`` queues an item from any thread, never blocking. An item is a
  :class:`Part` (shipped as is) or anything the uploader's ``prepare`` callable turns into
  parts on the worker thread (the client passes events, mapped and encoded there).
* Closed batches become request bodies that a :mod:`shipper <.shippers>` sends, several
  at once: a child sender process by default, or threads calling an :class:`Exporter`.
* ``Exporter.export(body, timeout=...)`` posts one ``/messages`` body; exporters that
  accept ``path=`` receive other paths too (:class:`HTTPExporter` does).

Example: a rating, queued like any other request::

    uploader.submit(Part("/ratings", encode_json(rating)))
"""

from .exporters import (
    Exporter,
    ExportResult,
    HTTPExporter,
    InMemoryExporter,
    JSONLExporter,
    parse_retry_after,
)
from .request import Part
from .uploader import Uploader

__all__ = [
    "ExportResult",
    "Exporter",
    "HTTPExporter",
    "InMemoryExporter",
    "JSONLExporter",
    "Part",
    "Uploader",
    "parse_retry_after",
]
