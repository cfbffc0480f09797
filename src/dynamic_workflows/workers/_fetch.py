"""The global ``fetch`` for code that runs in the host (the dispatcher): outbound HTTP with httpx.

Tenant code loaded through a Worker Loader gets its own ``fetch`` from the loader, bound to its
``global_outbound`` policy; this one is the unrestricted host version. Like Cloudflare's, an HTTP
error status is a response, not an exception; a request that cannot be sent at all raises
``ConnectionError``.

The host binds a shared :class:`httpx.AsyncClient` (connection pooling) around its calls into
dispatcher code with :func:`use_http_client`; without one, each call opens a short-lived client.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._http import Headers, Request, Response, make_request

if TYPE_CHECKING:  # httpx is imported on first use: sandboxed workers import this SDK too
    import httpx

__all__ = ["FetchResponse", "fetch", "use_http_client"]

_client: contextvars.ContextVar[httpx.AsyncClient | None] = contextvars.ContextVar(
    "dwf_http_client", default=None
)

DEFAULT_TIMEOUT = 30.0


class _JsonAccessor:
    """``Response.json(data)`` builds a response on the class; ``await resp.json()`` reads the
    body of a fetched one, as in Cloudflare's SDK."""

    def __get__(self, obj: object, owner: type[Response]) -> Any:
        if obj is None:
            return vars(Response)["json"].__get__(None, owner)
        assert isinstance(obj, Response)
        return obj.json_body


class FetchResponse(Response):
    """What :func:`fetch` returns: a Response whose body ``await resp.json()`` reads."""

    json = _JsonAccessor()


class use_http_client:  # a context manager used as a function
    """Make ``client`` the one :func:`fetch` sends through in this context."""

    __slots__ = ("_client", "_token")

    def __init__(self, client: httpx.AsyncClient | None) -> None:
        self._client = client

    def __enter__(self) -> None:
        self._token = _client.set(self._client)

    def __exit__(self, *exc: object) -> None:
        _client.reset(self._token)


async def fetch(
    resource: Any, init: Mapping[str, Any] | None = None, /, **options: Any
) -> FetchResponse:
    """Send an HTTP request: ``await fetch(url, method=..., headers=..., body=...)`` (or
    ``fetch(url, {"method": ...})``, or ``fetch(request)``)."""
    request = make_request(resource, init, **options)
    if not request.url.startswith(("http://", "https://")):
        raise TypeError(f"fetch() supports http and https URLs only, not {request.url!r}")
    import httpx

    body = request.body_bytes()
    client = _client.get()
    try:
        if client is not None:
            resp = await _send(client, request, body)
        else:
            async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT) as own:
                resp = await _send(own, request, body)
    except httpx.TransportError as exc:
        raise ConnectionError(
            f"fetch {request.method} {request.url} failed: {exc or type(exc).__name__}"
        ) from None
    return FetchResponse(
        resp.content,
        status=resp.status_code,
        headers=Headers(resp.headers.multi_items()),
        status_text=resp.reason_phrase,
    )


async def _send(client: httpx.AsyncClient, request: Request, body: bytes) -> httpx.Response:
    return await client.request(
        request.method,
        request.url,
        headers=request.headers.items(),
        content=body if body or request.method not in ("GET", "HEAD") else None,
    )
