"""Check the ``local`` extra (Starlette + uvicorn) with an error that says how to get it."""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "pip install 'gf-integrations[local]'"


def require() -> None:
    """Raise ImportError naming the extra when starlette or uvicorn is missing."""
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"the local collector needs {' and '.join(missing)}: {INSTALL_HINT}",
            name=missing[0],
        )
