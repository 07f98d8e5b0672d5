"""The collector's Starlette app: ``POST /api/v1/messages`` (and ``/ratings``, ``/events``,
``/users``, ``/organizations``), read endpoints, the viewer.

Every client input ends in a 2xx or a 4xx: bodies are read with a size cap, parsed with
guards for invalid UTF-8 and deep nesting, validated by :mod:`gf_integrations.schema`
and applied in one transaction. A 500 only means a bug in the collector itself.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from ..schema import (
    EventCreateRequest,
    MessageCreateRequest,
    OrganizationCreateRequest,
    RatingLogRequest,
    UserCreateRequest,
)
from . import _deps
from .store import IngestError, Store

_deps.require()

from starlette.applications import Starlette  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse, JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from . import viewer  # noqa: E402

__all__ = ["MAX_BODY_BYTES", "create_app"]

log = logging.getLogger("gf_integrations.collector")

#: Largest accepted request body (bytes); larger bodies get 413. The Greenflash
#: uploader caps its batches at 1 MB, so 10 MB leaves room for hand-made requests.
MAX_BODY_BYTES = 10 * 1024 * 1024


# Defence in depth: the viewer escapes everything AND the page may run no script at all.
_VIEWER_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
}


class _TooLarge(Exception):
    pass


def _problem_list(exc: ValidationError) -> list[dict[str, str]]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        problems.append({"path": loc or "(body)", "message": str(err.get("msg", "invalid"))})
    return problems


def _error(status: int, message: str, problems: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"success": False, "error": message}
    if problems is not None:
        body["details"] = problems
    return JSONResponse(body, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _TooLarge
        except ValueError:
            pass
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked or lying Content-Length
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    store: Store, *, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES
) -> Starlette:
    """Build the ASGI app over ``store``; with ``api_key`` every API call needs the Bearer."""
    expected = f"Bearer {api_key}".encode() if api_key else None

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "")
        if given[:6].lower() == "basic ":
            # the browser's login prompt for the viewer: any user name, the key as password
            try:
                decoded = base64.b64decode(given[6:], validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return False
            given = "Bearer " + decoded.partition(":")[2]
        return hmac.compare_digest(given.encode("utf-8", "replace"), expected)

    def unauthorized() -> JSONResponse:
        resp = _error(401, "missing or invalid API key (Authorization: Bearer <key>)")
        resp.headers["www-authenticate"] = "Bearer"
        return resp

    def post_endpoint(
        model: type[BaseModel], apply: Callable[[Any], dict[str, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST route: auth, size cap, JSON guards, validation by ``model``, ``apply``."""

        async def endpoint(request: Request) -> Response:
            try:
                if not authorized(request):
                    return unauthorized()
                try:
                    raw = await _read_body(request, max_body_bytes)
                except _TooLarge:
                    return _error(413, f"request body larger than {max_body_bytes} bytes")
                # parsing, validation and storage off the event loop: a 10 MB body takes a while
                return await run_in_threadpool(_ingest_body, raw, model, apply)
            except Exception:  # a collector bug: say so, keep serving
                log.exception("collector: unexpected error while ingesting")
                return _error(500, "internal error in the local collector")

        return endpoint

    def _ingest_body(
        raw: bytes, model: type[BaseModel], apply: Callable[[Any], dict[str, Any]]
    ) -> Response:
        try:
            data = json.loads(raw)
        except UnicodeDecodeError:
            return _error(
                400, "body is not valid UTF-8", [{"path": "(body)", "message": "invalid UTF-8"}]
            )
        except RecursionError:
            return _error(
                400, "body is nested too deeply", [{"path": "(body)", "message": "too deep"}]
            )
        except ValueError as exc:
            return _error(
                400, "body is not valid JSON", [{"path": "(body)", "message": str(exc)[:200]}]
            )
        if not isinstance(data, dict):
            return _error(
                400, "body must be a JSON object", [{"path": "(body)", "message": "not an object"}]
            )
        try:
            req = model.model_validate(data)
        except ValidationError as exc:
            problems = _problem_list(exc)
            return _error(400, f"invalid request ({len(problems)} problem(s))", problems)
        except RecursionError:
            return _error(
                400, "body is nested too deeply", [{"path": "(body)", "message": "too deep"}]
            )
        try:
            result = apply(req)
        except IngestError as exc:
            return _error(exc.status, str(exc)[:500], exc.problems)
        except (RecursionError, ValueError, TypeError, OverflowError) as exc:
            # e.g. a properties value too deep or too odd to re-serialise for storage
            return _error(
                400,
                "request could not be stored",
                [{"path": "(body)", "message": f"{type(exc).__name__}: {str(exc)[:200]}"}],
            )
        return JSONResponse(result)

    async def list_conversations(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        q = request.query_params
        try:
            limit = int(q.get("limit", "50"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            return _error(400, "limit and offset must be integers")
        result = await run_in_threadpool(
            lambda: store.list_conversations(
                external_user_id=q.get("externalUserId"),
                external_organization_id=q.get("externalOrganizationId"),
                product_id=q.get("productId"),
                limit=limit,
                offset=offset,
            )
        )
        return JSONResponse(result)

    async def get_conversation(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        cid = request.path_params["cid"]
        conv = await run_in_threadpool(store.get_conversation, cid)
        if conv is None:
            found = await run_in_threadpool(store.find_conversation_id, cid)
            conv = await run_in_threadpool(store.get_conversation, found) if found else None
        if conv is None:
            return _error(404, "no such conversation")
        conv.pop("messages", None)
        conv["messages"] = conv.pop("tree")
        return JSONResponse(conv)

    async def list_prompts(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        return JSONResponse({"prompts": await run_in_threadpool(store.list_prompts)})

    async def get_prompt(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        prompt = await run_in_threadpool(store.get_prompt, request.path_params["pid"])
        if prompt is None:
            return _error(404, "no such prompt")
        return JSONResponse(prompt)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    def viewer_login() -> Response:
        return HTMLResponse(
            "<!doctype html><title>gf-integrations</title><p>This collector needs its API key: "
            "sign in with any user name and the key as password.</p>",
            status_code=401,
            headers={"www-authenticate": 'Basic realm="gf-integrations collector"'},
        )

    async def index(request: Request) -> Response:
        if not authorized(request):
            return viewer_login()
        cid = request.query_params.get("c")
        page = await run_in_threadpool(viewer.render_page, store, cid)
        return HTMLResponse(page, headers=_VIEWER_HEADERS)

    async def conversation_page(request: Request) -> Response:
        if not authorized(request):
            return viewer_login()
        page = await run_in_threadpool(viewer.render_page, store, request.path_params["cid"])
        return HTMLResponse(page, headers=_VIEWER_HEADERS)

    routes = [
        Route(
            "/api/v1/messages", post_endpoint(MessageCreateRequest, store.ingest), methods=["POST"]
        ),
        Route(
            "/api/v1/ratings",
            post_endpoint(RatingLogRequest, store.ingest_rating),
            methods=["POST"],
        ),
        Route(
            "/api/v1/events",
            post_endpoint(EventCreateRequest, store.ingest_event),
            methods=["POST"],
        ),
        Route(
            "/api/v1/users", post_endpoint(UserCreateRequest, store.ingest_user), methods=["POST"]
        ),
        Route(
            "/api/v1/organizations",
            post_endpoint(OrganizationCreateRequest, store.ingest_organization),
            methods=["POST"],
        ),
        Route("/api/v1/conversations", list_conversations, methods=["GET"]),
        Route("/api/v1/conversations/{cid:str}", get_conversation, methods=["GET"]),
        Route("/api/v1/prompts", list_prompts, methods=["GET"]),
        Route("/api/v1/prompts/{pid:str}", get_prompt, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/", index, methods=["GET"]),
        Route("/conversations/{cid:str}", conversation_page, methods=["GET"]),
    ]
    return Starlette(routes=routes)
