"""Import-time check that llama-index-core is installed and new enough."""

from __future__ import annotations

import importlib.metadata
import importlib.util

_FLOOR = (0, 12)


def check_framework() -> None:
    """ImportError naming the extra when llama-index-core is missing, the floor when old."""
    try:
        missing = importlib.util.find_spec("llama_index.core") is None
    except ImportError:  # not even the llama_index namespace
        missing = True
    if missing:
        raise ImportError(
            "gf_integrations.llamaindex needs llama-index-core: "
            "pip install 'gf-integrations[llamaindex]'"
        )
    try:
        found = importlib.metadata.version("llama-index-core")
    except importlib.metadata.PackageNotFoundError:
        return  # a source tree without metadata: the package imports decide
    release = tuple(int(p) for p in found.split(".")[:2] if p.isdigit())
    if release < _FLOOR:
        raise ImportError(
            f"gf_integrations.llamaindex needs llama-index-core >= 0.12 (installed: {found})"
        )


check_framework()
