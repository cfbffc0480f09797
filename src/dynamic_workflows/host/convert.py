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
    "DEFAULT_MAX_BODY",
    "MAX_BODY",
    "BodyTooLargeError",
    "parse_size",
    "read_request",
    "response_parts",
    "size_text",
    "to_http_response",
    "to_workers_request",
]

MAX_BODY = 100 * 1024 * 1024
"""Cloudflare's request body limit on the Free and Pro plans: 100 MB; the most a host accepts."""

DEFAULT_MAX_BODY = 10 * 1024 * 1024
"""The host's request body limit unless configured (``dwf dev/serve --max-body-size``). Not
Cloudflare's 100 MB: a body goes to a tenant's worker whole, in one message, and a worker's
memory (128 MiB above its baseline by default) must hold it several times over while it is
received, decoded and read (see :func:`dynamic_workflows.sandbox.process.max_call_bytes`)."""


def size_text(size: int) -> str:
    """``size`` bytes for people: ``10 MiB``, ``512 KiB`` or ``1000 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 1000,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 1000**2,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 1000**3,
}


def parse_size(text: str) -> int:
    """``10MiB``, ``10 MB``, ``512k`` or ``1048576`` as bytes (K/M/G and KiB/MiB/GiB are powers
    of 1024, KB/MB/GB of 1000); ValueError naming the forms otherwise."""
    stripped = text.strip().lower()
    number = stripped.rstrip("kmgib ")
    unit = stripped[len(number) :].strip()
    if not (number.isascii() and number.isdigit()) or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: write e.g. 10MiB, 512KiB, 10MB or 1048576")
    return int(number) * _UNITS[unit]


def _too_large(max_body: int, declared: str | None = None) -> BodyTooLargeError:
    what = "request body" if declared is None else f"request body of {declared} bytes"
    return BodyTooLargeError(f"{what} is over the host's limit of {size_text(max_body)}")


_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


async def to_workers_request(request: HTTPRequest, *, max_body: int = DEFAULT_MAX_BODY) -> Request:
    """The ``workers.Request`` for an incoming request: method, full URL, headers, body."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise _too_large(max_body, declared)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise _too_large(max_body)
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


async def read_request(
    scope: Scope, receive: Receive, *, max_body: int = DEFAULT_MAX_BODY
) -> Request:
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
            raise _too_large(max_body, length)  # before reading any of it
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
                    raise _too_large(max_body)  # the rest is not read
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
