"""Settings: explicit arguments first, then environment variables, validated at construction."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit

from ..transport.delivery import DeliverySettings
from .masking import MaskFn, resolve_mask
from .platform import default_spool_dir, detect_platform
from .safejson import Limits

DEFAULT_BASE_URL = "https://www.greenflash.ai/api/v1"

ENV_API_KEY = "GREENFLASH_API_KEY"
ENV_BASE_URL = "GREENFLASH_BASE_URL"
ENV_PRODUCT_ID = "GREENFLASH_PRODUCT_ID"
ENV_SAMPLE_RATE = "GREENFLASH_SAMPLE_RATE"
ENV_ENABLED = "GREENFLASH_ENABLED"
ENV_SPOOL_DIR = "GREENFLASH_SPOOL_DIR"
ENV_USER_ID = "GREENFLASH_EXTERNAL_USER_ID"
ENV_KEEP_PROVIDER_USAGE = "GREENFLASH_KEEP_PROVIDER_USAGE"
ENV_ESTIMATE_COST = "GREENFLASH_ESTIMATE_COST"
ENV_SERVERLESS = "GREENFLASH_SERVERLESS"


class ConfigurationError(ValueError):
    """A setting is invalid. Raised at construction, never later."""


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is a loopback address or ``localhost``."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env_bool(name: str) -> bool | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    val = raw.strip().lower()
    if val in ("1", "true", "yes", "on"):
        return True
    if val in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true/false, not {raw!r}")


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved, validated configuration of one :class:`~gf_integrations.GreenflashClient`.

    ``keep_provider_usage`` (env ``GREENFLASH_KEEP_PROVIDER_USAGE``, default true): a model
    call's ``properties.usage`` is always in the one vocabulary (``inputTokens``,
    ``outputTokens``, ``totalTokens``, ``cacheReadTokens``, ``cacheWriteTokens``,
    ``reasoningTokens``: see core/usage.py); when true, the provider's own usage object is
    kept beside it as ``properties.providerUsage``, when false it is dropped.

    ``estimate_cost`` (env ``GREENFLASH_ESTIMATE_COST``, default true, false when
    ``serverless``: the table's import costs a cold start 85-240 ms): with the ``prices``
    extra installed, each model answer with usage gets ``properties.costUsd`` and
    ``properties.pricing`` from genai-prices' bundled table (core/pricing.py); false turns
    it off. Without the extra it does nothing.
    ``serverless`` (env ``GREENFLASH_SERVERLESS``; default: true when
    :func:`~.platform.detect_platform` finds AWS Lambda, Cloud Run or Vercel): the process
    may be frozen between invocations. Sending then stays in this process (``sender``
    defaults to ``"thread"``), and on a detected platform ``spool_dir`` defaults to
    ``$TMPDIR/greenflash-spool`` (``/tmp``). The invocation-end delivery itself is
    :mod:`gf_integrations.faas`'s (docs/DESIGN.md section 6b).
    """

    api_key: str | None = dataclasses.field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    product_id: str | None = None
    external_user_id: str | None = None
    external_organization_id: str | None = None
    sample_rate: float = 1.0
    enabled: bool = True
    mask: MaskFn | None = None
    limits: Limits = dataclasses.field(default_factory=Limits)
    max_queue_size: int = 10_000
    max_batch_messages: int = 100
    max_batch_bytes: int = 1_000_000
    max_message_bytes: int = 900_000
    flush_interval: float = 0.5
    request_timeout: float = 10.0
    retry_budget: float = 60.0
    max_backoff: float = 10.0
    max_retry_after: float = 60.0
    shutdown_timeout: float = 5.0
    max_concurrent_requests: int = 8
    sender: str = "process"
    spool_dir: str | None = None
    keep_provider_usage: bool = True
    estimate_cost: bool = True
    serverless: bool = False

    def __post_init__(self) -> None:
        url = self.base_url.rstrip("/")
        object.__setattr__(self, "base_url", url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"base_url must be an http(s) URL, not {url!r}")
        if parts.scheme == "http" and not is_loopback_url(url):
            raise ConfigurationError(
                "base_url: plain http is only allowed for loopback hosts "
                f"(127.0.0.1, ::1, localhost); use https for {parts.hostname!r}"
            )
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ConfigurationError(f"sample_rate must be within 0..1, not {self.sample_rate}")
        positive = {
            "max_queue_size": self.max_queue_size,
            "max_batch_messages": self.max_batch_messages,
            "max_batch_bytes": self.max_batch_bytes,
            "max_message_bytes": self.max_message_bytes,
            "flush_interval": self.flush_interval,
            "request_timeout": self.request_timeout,
            "shutdown_timeout": self.shutdown_timeout,
            "max_backoff": self.max_backoff,
            "max_concurrent_requests": self.max_concurrent_requests,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigurationError(f"{name} must be > 0, not {value}")
        if self.sender not in ("process", "thread"):
            raise ConfigurationError(f"sender must be 'process' or 'thread', not {self.sender!r}")
        for flag in ("keep_provider_usage", "estimate_cost", "serverless"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigurationError(
                    f"{flag} must be True or False, not {getattr(self, flag)!r}"
                )
        if self.retry_budget < 0:
            raise ConfigurationError("retry_budget must be >= 0")
        if self.max_batch_messages > self.max_queue_size:
            raise ConfigurationError("max_batch_messages must not exceed max_queue_size")
        if self.max_message_bytes > self.max_batch_bytes:
            raise ConfigurationError("max_message_bytes must not exceed max_batch_bytes")

    @property
    def is_local(self) -> bool:
        """True when sending to a loopback collector (no API key needed)."""
        return is_loopback_url(self.base_url)

    @property
    def can_send(self) -> bool:
        """True when enabled and either an API key is set or the target is local."""
        return self.enabled and (bool(self.api_key) or self.is_local)

    @property
    def delivery(self) -> DeliverySettings:
        """The transport's slice of these settings (it never sees the rest)."""
        return DeliverySettings(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(DeliverySettings)}
        )

    def __repr__(self) -> str:  # never show the key, only whether one is set
        return (
            f"Settings(base_url={self.base_url!r}, api_key={'***' if self.api_key else None}, "
            f"product_id={self.product_id!r}, sample_rate={self.sample_rate}, "
            f"enabled={self.enabled})"
        )


def _serverless_defaults(merged: dict[str, Any]) -> None:
    """Defaults for a process that a platform freezes between invocations (in place)."""
    platform = detect_platform()
    serverless = merged.setdefault("serverless", platform is not None)
    if serverless is not True:
        return
    # no sender child: it would add an interpreter's start to the cold start, and a
    # process that waits for its flush at every invocation's end gains nothing from it
    merged.setdefault("sender", "thread")
    # the price table's import adds 85 ms to every cold start, 240 ms where its bytecode
    # is not cached (a read-only package without .pyc files): asked for, not by default
    merged.setdefault("estimate_cost", False)
    if platform is not None:
        # a detected platform's /tmp is private to its sandbox; a forced one's may be shared
        merged.setdefault("spool_dir", default_spool_dir())


def build_settings(**kwargs: Any) -> Settings:
    """Merge explicit keyword arguments (non-None wins) with the environment."""
    env: dict[str, Any] = {
        "api_key": os.environ.get(ENV_API_KEY) or None,
        "base_url": os.environ.get(ENV_BASE_URL) or None,
        "product_id": os.environ.get(ENV_PRODUCT_ID) or None,
        "external_user_id": os.environ.get(ENV_USER_ID) or None,
        "sample_rate": _env_float(ENV_SAMPLE_RATE),
        "enabled": _env_bool(ENV_ENABLED),
        "spool_dir": os.environ.get(ENV_SPOOL_DIR) or None,
        "keep_provider_usage": _env_bool(ENV_KEEP_PROVIDER_USAGE),
        "estimate_cost": _env_bool(ENV_ESTIMATE_COST),
        "serverless": _env_bool(ENV_SERVERLESS),
    }
    merged = {k: v for k, v in env.items() if v is not None}
    merged.update({k: v for k, v in kwargs.items() if v is not None})
    _serverless_defaults(merged)
    if "mask" in merged:
        try:
            merged["mask"] = resolve_mask(merged["mask"])
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    if "limits" in merged and isinstance(merged["limits"], dict):
        try:
            merged["limits"] = Limits(**merged["limits"])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"limits: {exc}") from None
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(merged) - known
    if unknown:
        raise ConfigurationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    try:
        return Settings(**merged)
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None
