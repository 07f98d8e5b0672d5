"""Exporters: where a finished batch (one ``POST /messages`` body) goes.

An exporter classifies the outcome; the uploader owns the retry policy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import email.utils
import http.client
import json
import logging
import math
import os
import socket
import ssl
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

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
        # Thousands of small POSTs: a plain keep-alive http.client connection costs about
        # a quarter of httpx's CPU per POST. httpx stays in charge whenever it adds
        # something: an injected transport or a proxy for this URL. One connection per
        # concurrent request, kept for reuse.
        self._fast = transport is None and not _proxied(self.url)
        self._idle_posters: list[_KeepAlivePoster] = []

    def __repr__(self) -> str:
        return f"HTTPExporter(url={self.url!r})"

    def _get_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    headers=self._headers,
                    transport=self._transport,
                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
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
        self._idle_posters = []  # never close the parent's sockets from the child

    def export(self, payload: bytes, *, timeout: float, path: str = "/messages") -> ExportResult:
        """POST the payload to ``path``; classify the outcome. Safe from several threads."""
        if self._fast:
            with self._lock:
                idle = self._idle_posters
                poster = idle.pop() if idle else None
            if poster is None:
                poster = _KeepAlivePoster(self.base_url, self._headers, self._secret)
            try:
                return poster.export(payload, timeout=timeout, path=path)
            finally:
                with self._lock:
                    self._idle_posters.append(poster)
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
            posters, self._idle_posters = self._idle_posters, []
        for poster in posters:
            poster.close()


def _proxied(url: str) -> bool:
    """True when the environment routes ``url`` through a proxy (httpx handles those)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def _ssl_context() -> ssl.SSLContext:
    # the same trust store httpx uses: SSL_CERT_FILE, else certifi's bundle
    cafile = os.environ.get("SSL_CERT_FILE")
    if not cafile:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:  # pragma: no cover - certifi comes with httpx
            cafile = None
    return ssl.create_default_context(cafile=cafile)


class _KeepAlivePoster:
    """One persistent ``http.client`` connection (one per sending thread)."""

    def __init__(self, base_url: str, headers: dict[str, str], secret: str | None) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base_path = (parts.path or "").rstrip("/")
        self._secret = secret
        host = self._host if ":" not in self._host else f"[{self._host}]"
        default_port = 443 if self._https else 80
        if self._port is not None and self._port != default_port:
            host = f"{host}:{self._port}"
        lines = [f"Host: {host}", "Accept-Encoding: identity"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._fields = "\r\n".join(lines)
        self._heads: dict[str, bytes] = {}
        self._timeout: float | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            if self._ssl is None:
                self._ssl = _ssl_context()
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ssl
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _head(self, path: str) -> bytes:
        head = self._heads.get(path)
        if head is None:
            line = f"POST {self._base_path}{path} HTTP/1.1\r\n{self._fields}\r\nContent-Length: "
            head = self._heads[path] = line.encode("latin-1")
        return head

    def export(self, payload: bytes, *, timeout: float, path: str = "/messages") -> ExportResult:
        timeout = max(timeout, 0.001)
        # One write for headers and body: no Nagle/delayed-ACK stall on servers that
        # answer late, and one GIL hand-off instead of two while the host is busy.
        request = self._head(path) + str(len(payload)).encode("ascii") + b"\r\n\r\n" + payload
        with self._lock:
            for attempt in (0, 1):
                conn = self._conn
                reused = conn is not None and conn.sock is not None
                if conn is None:
                    conn = self._conn = self._connect(timeout)
                try:
                    if conn.sock is None:
                        conn.timeout = timeout
                        conn.connect()
                        self._timeout = timeout
                        sock: socket.socket | None = conn.sock
                        if sock is None:
                            raise ConnectionError("no socket after connect")
                        with contextlib.suppress(OSError):
                            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    else:
                        sock = conn.sock
                        if timeout != self._timeout:
                            sock.settimeout(timeout)
                            self._timeout = timeout
                    sock.sendall(request)
                    response = http.client.HTTPResponse(sock, method="POST")
                    response.begin()
                    body = response.read()
                except TimeoutError as exc:
                    self._drop(conn)
                    return ExportResult(
                        False, retryable=True, detail=f"timeout ({type(exc).__name__})"
                    )
                except (OSError, http.client.HTTPException) as exc:
                    self._drop(conn)
                    if reused and attempt == 0:
                        continue  # a stale keep-alive socket: one immediate retry
                    return ExportResult(
                        False, retryable=True, detail=f"connection error ({type(exc).__name__})"
                    )
                except Exception as exc:
                    self._drop(conn)
                    return ExportResult(
                        False, retryable=False, detail=f"client error ({type(exc).__name__})"
                    )
                if response.will_close:
                    self._drop(conn)
                return self._classify(response.status, response.getheaders(), body)
        return ExportResult(False, retryable=True, detail="connection error")  # pragma: no cover

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        with contextlib.suppress(Exception):
            conn.close()
        self._conn = None

    def _classify(
        self, status: int, header_list: list[tuple[str, str]], body: bytes
    ) -> ExportResult:
        if 200 <= status < 300:  # the hot path: no httpx objects
            try:
                data = json.loads(body) if body else None
            except ValueError:
                data = None
            return ExportResult(
                True, status=status, response=data if isinstance(data, dict) else None
            )
        # errors are rare: share the httpx-based classification and error detail
        return _classify(httpx.Response(status, headers=header_list, content=body), self._secret)


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
