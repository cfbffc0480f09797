"""HTTP between the server (Starlette/ASGI) and dispatcher code (``workers.Request``/``Response``).

Headers keep their order and repeated names (``set-cookie``); the body is read whole. Framing
headers of a worker's response (``content-length``, ``transfer-encoding``, ``connection``) are
recomputed by the server from the body actually sent.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import URL
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response as HTTPResponse
from starlette.types import Receive, Scope

from ..errors import BodyTooLargeError
from ..workers import Request, Response
from ..workers.hosting import incoming_request

__all__ = [
    "MAX_BODY",
    "BodyTooLargeError",
    "read_request",
    "response_parts",
    "to_http_response",
    "to_workers_request",
]

MAX_BODY = 100 * 1024 * 1024
"""Cloudflare's request body limit on the Free and Pro plans: 100 MB."""

_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


async def to_workers_request(request: HTTPRequest, *, max_body: int = MAX_BODY) -> Request:
    """The ``workers.Request`` for an incoming request: method, full URL, headers, body."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise BodyTooLargeError(f"request body of {declared} bytes is over {max_body} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise BodyTooLargeError(f"request body is over {max_body} bytes")
        chunks.append(chunk)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    return Request(str(request.url), method=request.method, headers=headers, body=b"".join(chunks))


_urls: dict[tuple[Any, ...], str] = {}
"""Request URLs by what Starlette builds them from (most requests repeat a few)."""
_URLS_MAX = 1024


def _request_url(scope: Scope, host: bytes | None) -> str:
    """``str(starlette.requests.Request(scope).url)``; ``host``: the first ``host`` header."""
    server = scope.get("server")
    if type(server) is list:
        server = tuple(server)
    key = (
        scope.get("scheme", "http"),
        host,
        server,
        scope["path"],
        scope.get("query_string", b""),
    )
    try:
        url = _urls.get(key)
    except TypeError:  # an unhashable part: not cached
        return str(URL(scope=scope))
    if url is None:
        url = str(URL(scope=scope))
        if len(_urls) >= _URLS_MAX:
            _urls.clear()
        _urls[key] = url
    return url


async def read_request(scope: Scope, receive: Receive, *, max_body: int = MAX_BODY) -> Request:
    """The ``workers.Request`` for the ASGI request ``scope``, its body read from ``receive``:
    what :func:`to_workers_request` makes of ``starlette.requests.Request(scope, receive)``,
    without building that request."""
    headers: list[tuple[str, str]] = []
    host: bytes | None = None
    declared: bytes | None = None
    for name, value in scope["headers"]:
        headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
        if name == b"host":
            if host is None:
                host = value
        elif name == b"content-length" and declared is None:
            declared = value
    if declared is not None:
        length = declared.decode("latin-1")
        if length.isdigit() and int(length) > max_body:
            raise BodyTooLargeError(f"request body of {length} bytes is over {max_body} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > max_body:
                    raise BodyTooLargeError(f"request body is over {max_body} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return incoming_request(_request_url(scope, host), scope["method"], headers, bytes(body))


def response_parts(
    response: Response, *, head: bool = False
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The status, raw headers and body to send for a ``workers.Response`` (``head``: headers
    only)."""
    status = response.status
    if not 200 <= status <= 599:
        raise ValueError(f"the worker's Response has status {status}; it must be 200-599")
    body = b"" if status in (204, 304) else response.body_bytes()
    raw = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.items()
        if name not in _FRAMING
    ]
    if status not in (204, 304):
        raw.append((b"content-length", str(len(body)).encode()))
    return status, raw, b"" if head else body


def to_http_response(response: Response, *, head: bool = False) -> HTTPResponse:
    """The server response for a ``workers.Response`` (``head``: headers only)."""
    status, raw, body = response_parts(response, head=head)
    out = HTTPResponse(content=body, status_code=status)
    out.raw_headers = raw
    return out
