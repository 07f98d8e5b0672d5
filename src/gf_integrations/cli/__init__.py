"""The ``gf-integrations`` command: ``serve``, ``demo`` and ``upload``, one module each.

``serve`` and ``demo`` need the ``local`` extra (the collector); ``upload`` needs only
the core package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..core.settings import DEFAULT_BASE_URL, ConfigurationError
from . import demo, serve, upload
from .serve import DEFAULT_PORT

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    p = argparse.ArgumentParser(
        prog="gf-integrations",
        description="Greenflash integrations: local collector, demo and historical upload.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the local Greenflash-compatible collector")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--db", default="gf-collector.sqlite3", help="SQLite file (created if missing)")
    s.add_argument(
        "--api-key", default=None, help="require this Bearer key (or GF_COLLECTOR_API_KEY)"
    )
    s.set_defaults(func=serve.run)

    d = sub.add_parser("demo", help="record a chat and an agent run into a collector and show them")
    d.add_argument("--url", default=None, help="send to this collector/API base instead")
    d.add_argument("--api-key", default=None)
    d.add_argument("--db", default=None, help="keep the embedded collector's data in this file")
    d.add_argument("--port", type=int, default=0, help="port of the embedded collector")
    d.add_argument("--serve", action="store_true", help="keep the embedded collector running")
    d.set_defaults(func=demo.run)

    u = sub.add_parser("upload", help="import historical conversations from a JSONL file")
    u.add_argument("file")
    u.add_argument(
        "--url", default=None, help=f"API base (default $GREENFLASH_BASE_URL or {DEFAULT_BASE_URL})"
    )
    u.add_argument("--api-key", default=None, help="default $GREENFLASH_API_KEY")
    u.add_argument("--batch-size", type=int, default=100, help="messages per request (max 100)")
    u.set_defaults(func=upload.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gf-integrations`` command."""
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except ConfigurationError as exc:
        print(f"gf-integrations: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return rc
