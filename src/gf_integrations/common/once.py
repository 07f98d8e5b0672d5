"""Warnings logged once: our own failures and data we cannot read, without flooding.

A message never carries an exception's text, only its type: the text of an exception
raised on the host's data may quote that data (a prompt, a key, a user's words).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

log = logging.getLogger("gf_integrations")

# Keys are sites x error kinds, a small set in practice; the cap keeps a pathological key
# (one per run id) from growing it without bound: past it, nothing new is logged.
_MAX_KEYS = 4096


class OnceLog:
    """One set of keys already logged: per process (:data:`process`), or per owner (an
    uploader, a wire) when each instance should say it once."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: set[Hashable] = set()

    def warn(
        self, key: Hashable, message: str, *args: object, exc: BaseException | None = None
    ) -> bool:
        """Warn ``message % args`` the first time ``key`` is seen; True if it logged.

        With ``exc``, its type name is appended, never its text. Never raises: a failing
        ``repr`` of an argument or a broken logging handler is swallowed.
        """
        try:
            if key in self._keys or len(self._keys) >= _MAX_KEYS:
                return False
            self._keys.add(key)
            if exc is not None:
                message += " (%s)"
                args = (*args, type(exc).__name__)
            log.warning(message, *args)
            return True
        except Exception:  # pragma: no cover - logging itself failed
            return False

    def forget(self, key: Hashable) -> None:
        """Let ``key`` log again (tests that assert on a once-only warning)."""
        self._keys.discard(key)


#: the process-wide keys (a handler attached twice logs once)
process = OnceLog()
warn_once = process.warn
forget_logged = process.forget
