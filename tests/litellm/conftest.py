"""LiteLLM fetches its model price map from the network when imported, unless told to use
the copy it ships: set that before anything imports litellm (tests are loopback-only)."""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
