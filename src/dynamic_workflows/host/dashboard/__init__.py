"""The dashboard, a run viewer: a small front end over the admin API, served from this package.

Every page is the same HTML shell; the browser picks the view from the path, so each of these
URLs works as a link and on reload (under ``/cdn-cgi/local/explorer/``, also
``/cdn-cgi/explorer/``)::

    ./                                               workflows, their instances by status
    ./workflows/:name?status=&scope=&id=&page=       instances: filters, tenants, paging
    ./tenants?workflow=&order=&page=                 every tenant's usage, limits, throttled
    ./workflows/:name/instances/:id?scope=           an instance: timeline of steps and
        #step-:name-:count                           attempts, live while it runs, actions
    ./static/:file                                   the front end's files (nothing from a CDN)

Why a front end rather than server-rendered pages: the page holds no data and needs no token.
Everything it shows comes from the admin API with ``fetch``, carrying the admin token the tab
keeps (behind ``dwf serve``'s token, open ``/cdn-cgi/local/explorer/#token=<TOKEN>``: the fragment
never leaves the browser; or paste the token when asked); server-rendered pages would need the
token for the page itself, in a cookie or the URL. Plain ES modules, no build step:
``static/app.js`` routes, ``static/api.js`` speaks to the admin API, ``static/views/*.js`` are
the pages, ``static/ui.js`` holds what outlives a page (errors that stay until dismissed, the
confirmation dialog).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import posixpath

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from ..admin import CODE_NO_ROUTE, envelope_error, method_route

__all__ = ["dashboard_routes"]

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# The page loads only what this package serves; styles may be set inline (the timeline's bars).
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class _Asset:
    def __init__(self, body: bytes, media_type: str) -> None:
        self.body = body
        self.media_type = media_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


@functools.cache
def _assets() -> dict[str, _Asset]:
    """The files under ``static/`` by their path there (read once)."""
    found: dict[str, _Asset] = {}
    root = importlib.resources.files(__name__).joinpath("static")
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        for item in folder.iterdir():
            name = prefix + item.name
            if item.is_dir():
                stack.append((name + "/", item))
                continue
            media_type = _TYPES.get(posixpath.splitext(name)[1])
            if media_type is not None:
                found[name] = _Asset(item.read_bytes(), media_type)
    return found


@functools.cache
def _shell(base: str) -> str:
    page = importlib.resources.files(__name__).joinpath("index.html").read_text("utf-8")
    return page.replace("{{BASE}}", base)


def dashboard_routes(base: str) -> list[BaseRoute]:
    """The routes of the dashboard under ``base`` (a path ending in ``/``)."""

    async def page(request: Request) -> Response:
        return HTMLResponse(
            _shell(base),
            headers={"cache-control": "no-store", "content-security-policy": _POLICY},
        )

    async def asset(request: Request) -> Response:
        found = _assets().get(str(request.path_params["file"]))
        if found is None:
            return envelope_error(404, CODE_NO_ROUTE, "No route for the URI")
        # Revalidated on every load (a new version of dwf serves new files at the same URL).
        headers = {"cache-control": "no-cache", "etag": found.etag}
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    return [
        method_route(base, GET=page),
        method_route(base + "workflows/{rest:path}", GET=page),
        method_route(base + "tenants", GET=page),
        method_route(base + "static/{file:path}", GET=asset),
    ]
