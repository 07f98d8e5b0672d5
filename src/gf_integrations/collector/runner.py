"""Run the collector: embedded in a daemon thread (demos, notebooks, tests) or in the foreground."""

from __future__ import annotations

import atexit
import contextlib
import logging
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from .app import MAX_BODY_BYTES, create_app
from .store import Store

__all__ = ["RunningCollector", "serve", "start_collector"]

log = logging.getLogger("gf_integrations.collector")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says
    # TCP, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # Lets a restarted collector take the same port while old connections linger.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class RunningCollector:
    """A collector serving from a daemon thread. Use :func:`start_collector` to make one.

    Attributes:
        url: the viewer, e.g. ``http://127.0.0.1:50123``.
        base_url: the API base to give clients, ``url + "/api/v1"``.
        store: the :class:`~gf_integrations.collector.store.Store` (query it directly).
        db_path: the SQLite file.
    """

    def __init__(
        self,
        store: Store,
        server: uvicorn.Server,
        sock: socket.socket,
        thread: threading.Thread,
        tmpdir: str | None,
        api_key: str | None,
    ) -> None:
        self.store = store
        self._server = server
        self._sock = sock
        self._thread = thread
        self._tmpdir = tmpdir
        self.api_key = api_key
        addr = sock.getsockname()
        self.host: str = addr[0]
        self.port: int = addr[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self.base_url = self.url + "/api/v1"
        self.db_path = store.path
        self._stopped = False
        # a forgotten collector still closes its database and deletes its temp file
        atexit.register(self.stop)

    def __repr__(self) -> str:
        return f"RunningCollector(url={self.url!r}, db_path={self.db_path!r})"

    def __enter__(self) -> RunningCollector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the database; a temporary database is deleted. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        self._server.should_exit = True
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()
        self.store.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    # -- query helpers -----------------------------------------------------------------

    def conversations(self, **filters: Any) -> list[dict[str, Any]]:
        """Stored conversations, newest first (filters: ``external_user_id``,
        ``external_organization_id``, ``product_id``, ``limit``, ``offset``)."""
        filters.setdefault("limit", 500)
        result: list[dict[str, Any]] = self.store.list_conversations(**filters)["conversations"]
        return result

    def conversation(
        self, external_conversation_id: str, product_id: str | None = None
    ) -> dict[str, Any] | None:
        """One conversation (by external id, or internal id) with messages, tree, prompt."""
        cid = self.store.find_conversation_id(external_conversation_id, product_id)
        return self.store.get_conversation(cid or external_conversation_id)

    def messages(
        self, external_conversation_id: str, product_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The conversation's messages in order (empty if unknown)."""
        conv = self.conversation(external_conversation_id, product_id)
        return list(conv["messages"]) if conv else []

    def conversation_tree(
        self, external_conversation_id: str, product_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The conversation's messages nested under their parents (``children``)."""
        conv = self.conversation(external_conversation_id, product_id)
        return list(conv["tree"]) if conv else []

    def ratings(
        self, external_conversation_id: str, product_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Ratings of the conversation and of its messages (empty if unknown)."""
        conv = self.conversation(external_conversation_id, product_id)
        return list(conv["ratings"]) if conv else []

    def events(
        self, external_conversation_id: str, product_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Business events linked to the conversation, in time order (empty if unknown)."""
        conv = self.conversation(external_conversation_id, product_id)
        return list(conv["events"]) if conv else []

    def user(self, external_user_id: str) -> dict[str, Any] | None:
        """A user's stored profile (``participant`` shape of ``POST /users``), or None."""
        return self.store.get_user(external_user_id)

    def organization(self, external_organization_id: str) -> dict[str, Any] | None:
        """A stored organization (``organization`` shape of ``POST /organizations``)."""
        return self.store.get_organization(external_organization_id)

    def prompts(self) -> list[dict[str, Any]]:
        """Every stored system prompt with its components."""
        return self.store.list_prompts()

    def counts(self) -> dict[str, int]:
        """Row counts: organizations, users, conversations, messages, prompts, components."""
        return self.store.counts()


def start_collector(
    db_path: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    startup_timeout: float = 10.0,
) -> RunningCollector:
    """Start a collector in a daemon thread and return once it accepts requests.

    ``db_path`` None uses a temporary file deleted by ``stop()``; ``port`` 0 picks a free
    port. Binds loopback unless told otherwise. Usable as a context manager.
    """
    tmpdir = None
    if db_path is None:
        tmpdir = tempfile.mkdtemp(prefix="gf-collector-")
        db_path = Path(tmpdir) / "collector.sqlite3"
    store = Store(db_path)
    try:
        sock = _bind(host, port)
    except BaseException:
        store.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    app = create_app(store, api_key=api_key, max_body_bytes=max_body_bytes)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="gf-collector", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            store.close()
            raise RuntimeError("the local collector did not start")
        time.sleep(0.005)  # startup poll; uvicorn exposes no event to wait on
    return RunningCollector(store, server, sock, thread, tmpdir, api_key)


def serve(
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8787,
    api_key: str | None = None,
) -> None:
    """Serve in the foreground until interrupted (``gf-integrations serve``)."""
    store = Store(db_path)
    try:
        app = create_app(store, api_key=api_key)
        uvicorn.run(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
    finally:
        store.close()
