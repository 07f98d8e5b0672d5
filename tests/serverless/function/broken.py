"""A function whose module fails while it initialises, after configuring the pack."""

from __future__ import annotations

import gf_integrations as gf

gf.configure()
raise LookupError("no such table: settings")
