"""The client composes the pipeline, and holds the module-level default client.

caller thread: ``record(event)`` -> the uploader's buffer. Worker thread: the recorder's
:class:`~.core.recorder.Mapper` maps the event to wire-form messages, the
:class:`~.core.wire.MessageWire` encodes them into :class:`~.transport.request.Part` s,
and the uploader batches them and hands request bodies to a shipper (a sender process,
or threads over ``exporter``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from .core.context import Conv, IdentityDefaults, current_scope, resolve_conv
from .core.events import Event
from .core.feedback import FEEDBACK_EVENTS, FeedbackEvent, feedback_parts
from .core.ids import new_id
from .core.masking import MaskFn
from .core.recorder import Mapper
from .core.settings import Settings, build_settings
from .core.wire import MessageWire
from .transport.exporters import Exporter, ExportResult, HTTPExporter
from .transport.request import Part
from .transport.shippers import ProcessShipper, Shipper, ThreadShipper
from .transport.uploader import Uploader

log = logging.getLogger("gf_integrations")

__all__ = ["GreenflashClient", "configure", "flush", "get_client", "live_clients", "shutdown"]

# every client that can send, held weakly: what a serverless invocation's end delivers
_live: weakref.WeakSet[GreenflashClient] = weakref.WeakSet()
_live_lock = threading.Lock()


class GreenflashClient:
    """Holds settings and the background uploader; integrations record through it.

    Every argument can also come from the environment (``GREENFLASH_API_KEY``,
    ``GREENFLASH_BASE_URL``, ``GREENFLASH_PRODUCT_ID``, ``GREENFLASH_SAMPLE_RATE``,
    ``GREENFLASH_ENABLED``, ``GREENFLASH_SPOOL_DIR``). Invalid settings raise
    :class:`~gf_integrations.ConfigurationError` here, never later. With no API key and a
    non-local ``base_url`` the client warns once and records nothing.

    Args:
        api_key: Greenflash API key (sent as a Bearer token, never logged).
        base_url: API base, default ``https://www.greenflash.ai/api/v1``; plain
            ``http://`` only for loopback hosts (the local collector).
        product_id: sent as ``productId`` with every conversation.
        external_user_id: default user when nothing more specific is known.
        sample_rate: fraction of conversations kept (deterministic per conversation).
        mask: callable applied to every content/input/output/properties value before it
            leaves the process, or ``"pii"`` for the built-in redactor.
        exporter: where batches go (default: HTTP to ``base_url``); see
            :mod:`gf_integrations.transport`.
        enabled: False turns every integration into a no-op.
        **options: any other :class:`~gf_integrations.core.settings.Settings` field
            (``spool_dir``, ``flush_interval``, ``max_queue_size``, ``retry_budget``, ...).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        product_id: str | None = None,
        external_user_id: str | None = None,
        sample_rate: float | None = None,
        mask: MaskFn | str | None = None,
        exporter: Exporter | None = None,
        enabled: bool | None = None,
        **options: Any,
    ) -> None:
        self.settings: Settings = build_settings(
            api_key=api_key,
            base_url=base_url,
            product_id=product_id,
            external_user_id=external_user_id,
            sample_rate=sample_rate,
            mask=mask,
            enabled=enabled,
            **options,
        )
        s = self.settings
        self.active = s.enabled and (exporter is not None or s.can_send)
        if s.enabled and not self.active:
            log.warning(
                "gf_integrations: no GREENFLASH_API_KEY set and %s is not a local "
                "collector; nothing will be sent",
                s.base_url,
            )
        self.exporter: Exporter = exporter or HTTPExporter(s.base_url, s.api_key)
        self.mapper = Mapper(
            limits=s.limits,
            mask=s.mask,
            sample_rate=s.sample_rate,
            keep_provider_usage=s.keep_provider_usage,
            estimate_cost=s.estimate_cost,
        )
        if self.active:
            # the price table's import, here on the constructing thread (core/pricing.py)
            self.mapper.pricing.preload()
        self.wire = MessageWire(
            mask=s.mask, max_message_bytes=s.max_message_bytes, report=self._count
        )
        self.uploader = Uploader(
            s.delivery,
            self.exporter,
            self._prepare,
            shipper=self._shipper if exporter is None and s.sender == "process" else None,
            resend_spool=self.active,
        )
        if self.active:
            with _live_lock:
                _live.add(self)

    def _prepare(self, event: Event | FeedbackEvent) -> list[Part]:
        # runs under the uploader's mapping lock: its worker, or a host thread assisting it
        if isinstance(event, FEEDBACK_EVENTS):
            return feedback_parts(event, self.mapper)
        return self.wire.parts(self.mapper.map(event))

    def _count(self, name: str, n: int) -> None:
        self.uploader.counters.bump(name, n)

    def _shipper(self, on_done: Callable[[Any, ExportResult], None]) -> Shipper:
        s = self.settings
        return ProcessShipper(
            s.base_url,
            s.api_key,
            s.max_concurrent_requests,
            on_done,
            fallback=lambda: ThreadShipper(self.exporter, s.max_concurrent_requests, on_done),
        )

    def __repr__(self) -> str:
        return f"GreenflashClient({self.settings!r}, exporter={self.exporter!r})"

    def record(self, event: Event | FeedbackEvent) -> bool:
        """Queue one neutral event (or a rating, business event, profile). Never blocks,
        never raises."""
        if not self.active:
            return False
        try:
            return self.uploader.submit(event)
        except Exception:
            return False

    def resolve(
        self,
        *,
        defaults: IdentityDefaults | None = None,
        native_conversation_id: str | None = None,
        native_user_id: str | None = None,
        native_organization_id: str | None = None,
        fallback_conversation_id: str | None = None,
        extra_properties: Mapping[str, Any] | None = None,
        product_id: str | None = None,
    ) -> Conv:
        """Resolve a conversation identity with this client's configured defaults.

        ``product_id`` replaces the configured product id (below a scope's); a product id
        in ``defaults`` wins over the scope's.
        """
        s = self.settings
        return resolve_conv(
            explicit=defaults,
            scope=current_scope(),
            native_conversation_id=native_conversation_id,
            native_user_id=native_user_id,
            native_organization_id=native_organization_id,
            configured_user_id=s.external_user_id,
            configured_organization_id=s.external_organization_id,
            configured_product_id=product_id or s.product_id,
            fallback_conversation_id=fallback_conversation_id or new_id(),
            extra_properties=extra_properties,
        )

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver everything queued; True when all of it arrived within ``timeout``."""
        if not self.active:
            return True
        return self.uploader.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Bounded flush, spool what is left, stop the worker. Idempotent."""
        with _live_lock:
            _live.discard(self)
        self.uploader.shutdown(timeout)

    def spool_pending(self, timeout: float = 0.1) -> int:
        """Spool everything not yet delivered, now, and keep running (a serverless
        invocation at its deadline); the number of messages spooled, 0 without a
        ``spool_dir``. See :meth:`~.transport.Uploader.spool_pending`."""
        if not self.active:
            return 0
        return self.uploader.spool_pending(timeout)

    def resend_spool(self) -> bool:
        """Start resending what the spool holds (a serverless invocation began); False
        when there is nothing to resend."""
        if not self.active:
            return False
        return self.uploader.resend_spool()

    def stats(self) -> dict[str, int]:
        """Delivery counters: queued, sent, retried, dropped_*, spooled, sampled_out...;
        ``cost_unknown_model``: answers with usage that got no cost because the price
        table does not know their model (core/pricing.py)."""
        stats = self.uploader.stats()
        stats["sampled_out"] = self.mapper.sampled_out
        stats["cost_unknown_model"] = self.mapper.pricing.unknown_model
        return stats


_default: GreenflashClient | None = None
_default_lock = threading.Lock()


def configure(**kwargs: Any) -> GreenflashClient:
    """Create (or replace) the default client used by every integration.

    Takes the same arguments as :class:`GreenflashClient`. A replaced client is flushed
    and shut down within its ``shutdown_timeout``.
    """
    global _default
    client = GreenflashClient(**kwargs)
    with _default_lock:
        old, _default = _default, client
    if old is not None:
        old.shutdown()
    return client


def get_client() -> GreenflashClient:
    """The default client, created from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = GreenflashClient()
        return _default


def live_clients() -> list[GreenflashClient]:
    """Every client that can send and is still referenced (the default one included)."""
    with _live_lock:
        return list(_live)


def flush(timeout: float = 5.0) -> bool:
    """Flush the default client: True when everything queued was delivered in time."""
    return get_client().flush(timeout)


def shutdown(timeout: float | None = None) -> None:
    """Shut the default client down (also runs automatically at exit)."""
    with _default_lock:
        client = _default
    if client is not None:
        client.shutdown(timeout)
