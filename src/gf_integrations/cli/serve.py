"""``gf-integrations serve``: the local collector and viewer in the foreground."""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_PORT = 8787


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from ..collector import serve

    key = args.api_key or os.environ.get("GF_COLLECTOR_API_KEY") or None
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"gf-integrations collector on http://{shown}:{args.port}  (db: {args.db})")
    print(
        f"  API base: http://{shown}:{args.port}/api/v1"
        + ("  (Bearer key required)" if key else "")
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not key:
        print("  warning: listening beyond loopback without --api-key", file=sys.stderr)
    sys.stdout.flush()
    serve(args.db, host=args.host, port=args.port, api_key=key)
    return 0
