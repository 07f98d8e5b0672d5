"""``@gf.serverless``: a handler that delivers what it recorded before it returns.

For any platform that may freeze the process once a handler returns: Google Cloud Run
functions (``def fn(request)``), Azure Functions, Vercel Python, or an AWS Lambda handler
``(event, context)``. Sync and async handlers; the deadline comes from a Lambda context
when one is passed (``context.get_remaining_time_in_millis()``), else the flush takes at
most ``timeout`` seconds (default: the client's ``shutdown_timeout``). A handler that
raises is delivered for too, and its exception re-raised as it was. Nothing of ours
reaches the handler's caller.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from ..client import GreenflashClient, live_clients
from ..core.settings import ConfigurationError
from . import aws_lambda
from .deliver import begin, deliver

F = TypeVar("F", bound=Callable[..., Any])


@overload
def serverless(fn: F, /) -> F: ...


@overload
def serverless(
    *, timeout: float | None = None, client: GreenflashClient | None = None
) -> Callable[[F], F]: ...


def serverless(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    timeout: float | None = None,
    client: GreenflashClient | None = None,
) -> Any:
    """Deliver everything a handler recorded before it returns (or raises).

    Use as ``@gf.serverless`` or ``@gf.serverless(timeout=2.0)``. Before the handler runs,
    what an earlier invocation spooled is resent; after it, every client (or ``client``)
    is flushed until the Lambda context's deadline minus a margin, or for at most
    ``timeout`` seconds, and what is still undelivered is spooled (``spool_dir``) for
    the next invocation. See docs/DESIGN.md section 6b.

    Args:
        fn: the handler, sync or async, with any signature.
        timeout: longest flush in seconds when no Lambda context gives the deadline
            (default: the client's ``shutdown_timeout``); it also caps a Lambda flush.
        client: deliver this client only (default: every client that can send).
    """
    if timeout is not None and not timeout > 0:
        raise ConfigurationError(f"serverless: timeout must be > 0, not {timeout!r}")
    if fn is None:
        return functools.partial(_decorate, timeout=timeout, client=client)
    return _decorate(fn, timeout=timeout, client=client)


def _decorate(
    fn: Callable[..., Any], *, timeout: float | None, client: GreenflashClient | None
) -> Callable[..., Any]:
    if not callable(fn):
        raise TypeError(f"serverless: {fn!r} is not callable")
    try:
        aws_lambda.install()  # in case the Lambda runtime was imported after us
    except Exception:
        pass

    def clients() -> list[GreenflashClient]:
        return [client] if client is not None else live_clients()

    def start() -> None:
        try:
            begin(clients())
        except Exception:
            pass

    def finish(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            deliver(clients(), deadline=_deadline(args, kwargs), timeout=timeout)
        except Exception:
            pass

    async def finish_async(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # the flush waits on the network: off the event loop, which serves other requests
        try:
            import asyncio

            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, finish, args, kwargs)
        except RuntimeError:  # no loop or no executor (shutting down): here, then
            finish(args, kwargs)

    async def awaited(result: Awaitable[Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        try:
            value = await result
        except BaseException:
            await finish_async(args, kwargs)
            raise
        await finish_async(args, kwargs)
        return value

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_handler(*args: Any, **kwargs: Any) -> Any:
            start()
            return await awaited(fn(*args, **kwargs), args, kwargs)

        return async_handler

    @functools.wraps(fn)
    def handler(*args: Any, **kwargs: Any) -> Any:
        start()
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            finish(args, kwargs)
            raise
        if inspect.isawaitable(result):  # a callable object whose __call__ is async
            return awaited(result, args, kwargs)
        finish(args, kwargs)
        return result

    return handler


def _deadline(args: tuple[Any, ...], kwargs: dict[str, Any]) -> float | None:
    """The deadline (epoch seconds) of a Lambda context among the arguments, if any."""
    for value in (*args[:3], *kwargs.values()):
        remaining = getattr(value, "get_remaining_time_in_millis", None)
        if callable(remaining):
            try:
                return time.time() + float(remaining()) / 1000.0
            except Exception:
                return None
    return None
