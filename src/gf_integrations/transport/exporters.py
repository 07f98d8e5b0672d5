"""Exporters: where a finished batch (one ``POST /messages`` body) goes.

An exporter classifies the outcome; the uploader owns the retry policy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

log = logging.getLogger("gf_integrations")

RETRY_STATUSES = frozenset({408, 409, 429})


@dataclasses.dataclass(frozen=True, slots=True)
class ExportResult:
    """What happened to one batch: delivered, retryable (with optional delay), or fatal."""

    ok: bool
    retryable: bool = False
    retry_after: float | None = None
    status: int | None = None
    detail: str = ""
    # per-message statuses when the server reported them ("created"/"deduplicated")
    response: dict[str, Any] | None = None


@runtime_checkable
class Exporter(Protocol):
    """Ships one JSON payload. Must not raise; must return within ``timeout`` seconds.

    The uploader calls ``export(payload, timeout=...)`` for ``POST /messages`` bodies; an
    exporter that also accepts a ``path`` keyword (``"/ratings"``...) receives requests to
    other API paths that way.
    """

    def export(self, payload: bytes, *, timeout: float) -> ExportResult:
        """Deliver ``payload`` (a serialised request body)."""
        ...

    def shutdown(self) -> None:
        """Release resources."""
        ...


def export_to(exporter: Exporter, path: str, body: bytes, timeout: float) -> ExportResult:
    """Call ``exporter.export``; never raises (a failure is a retryable result)."""
    try:
        if path == "/messages":
            return exporter.export(body, timeout=timeout)
        # only exporters that know several paths take ``path`` (the default /messages
        # call keeps the Exporter protocol of user-written exporters unchanged)
        export: Any = exporter.export
        result: ExportResult = export(body, timeout=timeout, path=path)
        return result
    except BaseException as exc:  # a SystemExit in an exporter must not kill a thread
        return ExportResult(False, retryable=True, detail=f"exporter raised {type(exc).__name__}")


def parse_retry_after(
    headers: httpx.Headers | dict[str, str], now: float | None = None
) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (preferred) or ``Retry-After`` (seconds or
    HTTP-date). Returns None for a missing, malformed, negative or past value."""
    getter = headers.get
    raw_ms = getter("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            pass
        else:
            if math.isfinite(value) and value >= 0:
                return value
    raw = getter("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP-dates are GMT
        when = when.replace(tzinfo=dt.timezone.utc)
    delta = when.timestamp() - (time.time() if now is None else now)
    return delta if delta > 0 else None


# Keys of a JSON error body worth logging. Validation errors often echo the offending
# value ("received", "input", "value"...): those are payload, so they are left out.
_ERROR_KEYS = frozenset(
    {
        "error",
        "message",
        "detail",
        "details",
        "errors",
        "issues",
        "path",
        "loc",
        "field",
        "code",
        "msg",
        "type",
        "expected",
        "status",
        "title",
    }
)


def _error_summary(data: Any, depth: int = 0) -> Any:
    if depth > 6:
        return "..."
    if isinstance(data, dict):
        return {
            k: _error_summary(v, depth + 1)
            for k, v in data.items()
            if isinstance(k, str) and k in _ERROR_KEYS
        }
    if isinstance(data, list):
        return [_error_summary(v, depth + 1) for v in data[:10]]
    if isinstance(data, str):
        return data[:200]
    return data


def _error_detail(response: httpx.Response, secret: str | None = None) -> str:
    """The server's error message, short, never the request payload nor the key."""
    try:
        data = response.json()
    except Exception:
        ctype = response.headers.get("content-type", "")
        text = "" if "html" in ctype else (response.text or "").strip()[:200]
    else:
        if isinstance(data, dict) and ("error" in data or "message" in data):
            data = {k: v for k, v in data.items() if k in _ERROR_KEYS}
        text = json.dumps(_error_summary(data), ensure_ascii=False)[:500]
    if secret and secret in text:
        text = text.replace(secret, "***")
    return text


class HTTPExporter:
    """POSTs request bodies to ``{base_url}{path}`` (default ``/messages``) with a Bearer key."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = "gf-integrations",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/messages"
        headers = {"content-type": "application/json", "user-agent": user_agent}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._secret = api_key
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._fork_orphans: list[httpx.Client] = []

    def __repr__(self) -> str:
        return f"HTTPExporter(url={self.url!r})"

    def _get_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    headers=self._headers,
                    transport=self._transport,
                    limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
                )
            return self._client

    def reset_after_fork(self) -> None:
        """Drop the connection pool inherited from the parent process.

        The parent's pool is kept referenced (never closed nor collected here), so its
        sockets are not shut down under the parent.
        """
        self._lock = threading.Lock()
        if self._client is not None:
            self._fork_orphans.append(self._client)
        self._client = None

    def export(self, payload: bytes, *, timeout: float, path: str = "/messages") -> ExportResult:
        """POST the payload to ``path``; classify the outcome. Safe from several threads."""
        try:
            client = self._get_client()
            response = client.post(
                self.base_url + path, content=payload, timeout=max(timeout, 0.001)
            )
        except httpx.TimeoutException as exc:
            return ExportResult(False, retryable=True, detail=f"timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return ExportResult(
                False, retryable=True, detail=f"connection error ({type(exc).__name__})"
            )
        except Exception as exc:
            return ExportResult(
                False, retryable=False, detail=f"client error ({type(exc).__name__})"
            )
        return _classify(response, self._secret)

    def shutdown(self) -> None:
        """Close the connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _classify(response: httpx.Response, secret: str | None) -> ExportResult:
    """Delivered, retryable (with the server's requested delay) or fatal."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        return ExportResult(True, status=status, response=data if isinstance(data, dict) else None)
    should_retry = response.headers.get("x-should-retry")
    retryable = status in RETRY_STATUSES or status >= 500
    if should_retry in ("true", "false"):
        retryable = should_retry == "true"
    return ExportResult(
        False,
        retryable=retryable,
        retry_after=parse_retry_after(response.headers),
        status=status,
        detail=_error_detail(response, secret),
    )


class InMemoryExporter:
    """Keeps every delivered request body in memory (tests, notebooks)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def export(self, payload: bytes, *, timeout: float, path: str = "/messages") -> ExportResult:
        """Store the decoded body (``paths`` keeps the API path of each)."""
        body = json.loads(payload)
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
        return ExportResult(True, status=200)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """All delivered messages, in delivery order."""
        with self._lock:
            return [m for r in self.requests for m in r.get("messages", [])]

    def clear(self) -> None:
        """Forget everything stored."""
        with self._lock:
            self.requests.clear()
            self.paths.clear()

    def shutdown(self) -> None:
        """Nothing to release."""


class JSONLExporter:
    """Appends each request body as one JSON line to a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JSONLExporter(path={str(self.path)!r})"

    def export(self, payload: bytes, *, timeout: float, path: str = "/messages") -> ExportResult:
        """Append the payload as a line."""
        try:
            with self._lock, self.path.open("ab") as fh:
                fh.write(payload.replace(b"\n", b" ") + b"\n")
        except OSError as exc:
            return ExportResult(
                False, retryable=True, detail=f"write failed ({type(exc).__name__})"
            )
        return ExportResult(True)

    def shutdown(self) -> None:
        """Nothing to release."""
