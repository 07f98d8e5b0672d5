"""pytest plugin: run a framework's own test suite with our instrumentation attached globally.

Loaded by ``tests/compat/run.py`` (``make compat``) into langchain-core's unit suite with
``-p plugin``. At start-up it installs a default :class:`~gf_integrations.GreenflashClient`
whose exporter keeps every request in memory (nothing leaves the process) and calls
:func:`gf_integrations.langchain.instrument` so every run of every test also goes through
our handler. At the end each process (each xdist worker) writes our counters and every
warning our loggers emitted to ``$GF_COMPAT_REPORT_DIR/<worker>.json``.

``ALLOWLIST`` names the tests that may fail only with our instrumentation, each with its
reason. Only tests that assert on the exact set of registered handlers belong there; any
other difference is a bug of ours (the host or another handler saw something change).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

ALLOWLIST: dict[str, str] = {
    "tests.unit_tests.runnables.test_config::test_merge_config_callbacks": (
        "counts the handlers of a merged CallbackManager (asserts len(handlers) == 2 and "
        "their positions); instrument() adds one inheritable handler to every manager"
    ),
}


class _Warnings(logging.Handler):
    """Keeps what our loggers emitted at WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


_state: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    import gf_integrations as gf
    from gf_integrations.langchain import instrument
    from gf_integrations.transport.exporters import InMemoryExporter

    exporter = InMemoryExporter()
    client = gf.configure(exporter=exporter, flush_interval=0.2)
    warnings = _Warnings()
    logging.getLogger("gf_integrations").addHandler(warnings)
    instrument()
    _state.update(client=client, exporter=exporter, warnings=warnings)


def pytest_sessionfinish(session: pytest.Session) -> None:
    client = _state["client"]
    client.flush(30.0)
    stats = client.stats()
    report = {
        "events_recorded": stats["queued"],
        "messages_sent": len(_state["exporter"].messages),
        "dropped": stats["dropped"],
        "failed_mapping": stats["failed_mapping"],
        "warnings": _state["warnings"].lines,
    }
    out_dir = os.environ.get("GF_COMPAT_REPORT_DIR")
    if out_dir:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        Path(out_dir, f"{worker}.json").write_text(json.dumps(report))
