"""The ASGI applications of a host: what each listener serves.

``dwf dev`` (one port)::

    /cdn-cgi/local/explorer/api/...   the admin API (admin.py); also at /cdn-cgi/explorer/api,
                                      where wrangler 4's `workflows ... --local` calls it
    /cdn-cgi/local/explorer/...       the dashboard (dashboard/): its pages (workflows/...) and
                                      files (static/...); also under /cdn-cgi/explorer/
    /cdn-cgi/local/metrics            Prometheus metrics (metrics.py)
    anything else                     Default(ctx, env).fetch(request)

``dwf serve`` splits them: the public port serves only the dispatcher; the admin port serves
the admin API, the dashboard and ``/metrics``, every path but the dashboard's static page behind
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigurationError, TenantLimitError
from .admin import CODE_NO_ROUTE, AdminAPI, envelope_error, method_route
from .auth import bearer_matches, token_problem
from .convert import DEFAULT_MAX_BODY, BodyTooLargeError, read_request, response_parts
from .dashboard import dashboard_routes
from .live import LiveProject
from .metrics import HostMetrics

__all__ = [
    "DASHBOARD_PATH",
    "EXPLORER_API",
    "WRANGLER_API",
    "HostApp",
    "create_admin_app",
    "create_dev_app",
    "create_public_app",
]

log = logging.getLogger("dynamic_workflows.host")

EXPLORER_API = "/cdn-cgi/local/explorer/api"
WRANGLER_API = "/cdn-cgi/explorer/api"
"""Where wrangler 4 (``workflows ... --local --port``) sends the same requests."""
DASHBOARD_PATH = "/cdn-cgi/local/explorer/"
DEV_METRICS_PATH = "/cdn-cgi/local/metrics"
_RESERVED = ("/cdn-cgi/local/", "/cdn-cgi/explorer")


async def _http_error(request: HTTPRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return envelope_error(404, CODE_NO_ROUTE, "No route for the URI")
    response = envelope_error(exc.status_code, exc.status_code * 10 + 3, exc.detail)
    response.headers.update(exc.headers or {})  # a 405's Allow
    return response


def _explorer(live: LiveProject, metrics: HostMetrics, metrics_paths: tuple[str, ...]) -> Starlette:
    async def to_dashboard(request: HTTPRequest) -> Response:
        return RedirectResponse(DASHBOARD_PATH)

    # No redirects to the path with(out) a trailing slash in the API: a client's path is
    # answered as it is, in the envelope ("instances/%2F" was a 307 to "instances", which a
    # POST follows to create an instance).
    api = Router(AdminAPI(live).routes(), redirect_slashes=False)
    routes: list[BaseRoute] = [
        Mount(EXPLORER_API, app=api),
        Mount(WRANGLER_API, app=api),
        *dashboard_routes(DASHBOARD_PATH),
        *dashboard_routes("/cdn-cgi/explorer/"),
        method_route(DASHBOARD_PATH.rstrip("/"), GET=to_dashboard),
        method_route("/cdn-cgi/explorer", GET=to_dashboard),
        method_route("/", GET=to_dashboard),  # reached on the admin port only
        *(method_route(path, GET=metrics.endpoint) for path in metrics_paths),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


class HostApp:
    """One listener: routes a request to the explorer (admin API, dashboard, metrics) or to the
    dispatcher, checks the admin token, and times every request."""

    def __init__(
        self,
        live: LiveProject,
        metrics: HostMetrics,
        *,
        dispatcher: bool,
        explorer: bool,
        metrics_paths: tuple[str, ...] = (),
        token: str | None = None,
        expose_errors: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.live = live
        self.metrics = metrics
        self.dispatcher = dispatcher
        self.explorer: ASGIApp | None = (
            _explorer(live, metrics, metrics_paths) if explorer else None
        )
        self.metrics_paths = metrics_paths
        self.token = token
        self.expose_errors = expose_errors
        self.max_body = max_body

    def _route(self, path: str) -> str:
        if self.explorer is not None and (
            path.startswith(_RESERVED) or path in self.metrics_paths or not self.dispatcher
        ):
            if path.startswith((EXPLORER_API, WRANGLER_API)):
                return "admin"
            if path in self.metrics_paths:
                return "metrics"
            return "dashboard"
        return "dispatcher" if self.dispatcher else "none"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1003})
            return
        handler = self._route(scope["path"])
        if handler == "dispatcher":
            sent = [500]  # the status of the response started, if any
            started = time.perf_counter()
            try:
                await self._dispatch(scope, receive, send, sent)
            finally:
                self.metrics.observe(
                    handler, scope["method"], sent[0], time.perf_counter() - started
                )
            return
        status = 500
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if handler == "none":
                await PlainTextResponse("Not Found", 404)(scope, receive, timed_send)
            else:
                assert self.explorer is not None
                if (
                    self.token is not None
                    and handler != "dashboard"
                    and not self._authorized(scope)
                ):
                    response = envelope_error(401, 10000, "Authentication error")
                    response.headers["www-authenticate"] = 'Bearer realm="dwf admin"'
                    await response(scope, receive, timed_send)
                else:
                    async with self.live.use():
                        await self.explorer(scope, receive, timed_send)
        finally:
            self.metrics.observe(handler, scope["method"], status, time.perf_counter() - started)

    def _authorized(self, scope: Scope) -> bool:
        assert self.token is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                return bearer_matches(value, self.token)
        return False

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, sent: list[int]) -> None:
        """``Default.fetch`` for one request, in plain ASGI (this is the hot path of a host);
        ``sent[0]`` is set to the status of the response when it starts."""
        error: Response | None = None
        project = await self.live.acquire()
        try:
            try:
                incoming = await read_request(scope, receive, max_body=self.max_body)
            except BodyTooLargeError as exc:
                # Refused unread, or read no further than the limit: the server drops the rest
                # as it arrives (a client that sent "Expect: 100-continue" never sends it). Not
                # "Connection: close": closing on unread data resets the connection, and the
                # client would lose this answer.
                error = PlainTextResponse(str(exc), 413)
            else:
                try:
                    outgoing = await project.fetch(incoming)
                    status, headers, body = response_parts(outgoing, head=scope["method"] == "HEAD")
                except TenantLimitError as exc:
                    # A tenant over its create rate or max_live, uncaught by the dispatcher:
                    # the client is told to slow down, not that the worker failed.
                    error = PlainTextResponse(str(exc), 429)
                    if exc.retry_after is not None:
                        error.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
                except Exception as exc:
                    log.exception(
                        "%s %s: the dispatcher (Default.fetch) raised",
                        scope["method"],
                        URL(scope=scope),
                    )
                    text = "Worker threw exception"
                    if self.expose_errors:
                        text += f": {type(exc).__name__}: {exc}"
                    error = PlainTextResponse(text, 500)
        finally:
            self.live.release()
        if error is not None:
            status, headers, body = error.status_code, error.raw_headers, bytes(error.body)
        sent[0] = status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # The server starts and stops the project itself (one project may back two listeners).
    while True:
        message: dict[str, Any] = dict(await receive())
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_dev_app(
    live: LiveProject, metrics: HostMetrics, *, max_body: int = DEFAULT_MAX_BODY
) -> HostApp:
    """``dwf dev``: the dispatcher and the explorer on one port, errors shown in responses;
    request bodies over ``max_body`` bytes are refused (413)."""
    return HostApp(
        live,
        metrics,
        dispatcher=True,
        explorer=True,
        metrics_paths=(DEV_METRICS_PATH,),
        expose_errors=True,
        max_body=max_body,
    )


def create_public_app(
    live: LiveProject, metrics: HostMetrics, *, max_body: int = DEFAULT_MAX_BODY
) -> HostApp:
    """``dwf serve``'s public port: the dispatcher only; errors are not described to clients;
    request bodies over ``max_body`` bytes are refused (413)."""
    return HostApp(live, metrics, dispatcher=True, explorer=False, max_body=max_body)


def create_admin_app(live: LiveProject, metrics: HostMetrics, token: str) -> HostApp:
    """``dwf serve``'s admin port: admin API, dashboard and ``/metrics`` behind ``token``."""
    problem = token_problem(token)
    if problem is not None:
        raise ConfigurationError(f"the admin token {problem}")
    return HostApp(
        live,
        metrics,
        dispatcher=False,
        explorer=True,
        metrics_paths=("/metrics", DEV_METRICS_PATH),
        token=token,
    )
