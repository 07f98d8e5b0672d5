"""Check the ``local`` extra (Starlette + uvicorn) with an error that says how to get it."""

from __future__ import annotations

import importlib

INSTALL_HINT = "pip install 'gf-integrations[local]'"


def require() -> None:
    """Raise ImportError naming the extra when starlette or uvicorn is missing."""
    missing = []
    for name in ("starlette", "uvicorn"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"the local collector needs {' and '.join(missing)}: {INSTALL_HINT}",
            name=missing[0],
        )
