"""AWS Lambda, with nothing to call: the runtime interface client delivers for us.

Every Python function on Lambda runs the runtime interface client ``awslambdaric``: a
container image starts it (``python -m awslambdaric module.handler``), and the managed
python runtimes' ``/var/runtime/bootstrap.py`` imports the one they ship. Its loop is
``wait_next_invocation()``, the handler, then ``post_invocation_result()`` or
``post_invocation_error()``; Lambda freezes the sandbox once the outcome is posted. So the
runtime client's class is patched:

* after ``wait_next_invocation`` returns, the invocation's deadline
  (``Lambda-Runtime-Deadline-Ms``) is kept and what earlier invocations spooled is resent;
* before either post, every client's work is delivered under the rule of
  :mod:`.deliver` (flush until the deadline minus a margin, then spool).

The runtime has always imported ``awslambdaric`` before the function's module (which
imports us), so :func:`install` patches what is loaded and never imports it. Clients whose
``serverless`` setting is off are left alone.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..client import GreenflashClient, live_clients
from .deliver import begin, deliver

_MODULE = "awslambdaric.lambda_runtime_client"
_PATCHED = "__gf_patched__"
_lock = threading.Lock()
# the current invocation's deadline, epoch seconds (one invocation at a time per process:
# the runtime loop is sequential; multi-concurrent runtimes fork one loop per process)
_deadline: list[float | None] = [None]


def _clients() -> list[GreenflashClient]:
    return [c for c in live_clients() if c.settings.serverless]


def _began(request: Any) -> None:
    _deadline[0] = None  # never the previous invocation's
    try:
        raw = getattr(request, "deadline_time_in_ms", None)
        _deadline[0] = int(raw) / 1000.0 if raw else None
    finally:
        begin(_clients())


def _wrap_next(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wait_next_invocation(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = original(self, *args, **kwargs)
        try:
            _began(request)
        except Exception:
            pass
        return request

    setattr(wait_next_invocation, _PATCHED, True)
    return wait_next_invocation


def _wrap_post(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def post(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            deliver(_clients(), deadline=_deadline[0], timeout=None)
        except Exception:
            pass
        return original(self, *args, **kwargs)

    setattr(post, _PATCHED, True)
    return post


_WRAPPERS = {
    "wait_next_invocation": _wrap_next,
    "post_invocation_result": _wrap_post,
    "post_invocation_error": _wrap_post,
}


def install() -> bool:
    """Patch the loaded runtime client (idempotent); False when awslambdaric is not loaded
    or has none of the methods (every release since 1.1 has them)."""
    module = sys.modules.get(_MODULE)
    if module is None:
        return False
    found = False
    with _lock:
        # the class that defines a method is patched (4.x: BaseLambdaRuntimeClient, under
        # both the standard and the multi-concurrent client; 1.x to 3.x: LambdaRuntimeClient)
        for cls in list(vars(module).values()):
            if not isinstance(cls, type) or cls.__module__ != module.__name__:
                continue
            for name, wrap in _WRAPPERS.items():
                original = cls.__dict__.get(name)
                if not callable(original):
                    continue
                found = True
                if not getattr(original, _PATCHED, False):
                    setattr(cls, name, wrap(original))
    return found
