"""HTTP between the server (Starlette/ASGI) and dispatcher code (``workers.Request``/``Response``).

Headers keep their order and repeated names (``set-cookie``); the body is read whole. Framing
headers of a worker's response (``content-length``, ``transfer-encoding``, ``connection``) are
recomputed by the server from the body actually sent.
"""

from __future__ import annotations

from starlette.requests import Request as HTTPRequest
from starlette.responses import Response as HTTPResponse

from ..workers import Request, Response

__all__ = ["MAX_BODY", "BodyTooLargeError", "to_http_response", "to_workers_request"]

MAX_BODY = 100 * 1024 * 1024
"""Cloudflare's request body limit on the Free and Pro plans: 100 MB."""

_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class BodyTooLargeError(ValueError):
    """The request body is over the limit."""


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


def to_http_response(response: Response, *, head: bool = False) -> HTTPResponse:
    """The server response for a ``workers.Response`` (``head``: headers only)."""
    status = response.status
    if not 200 <= status <= 599:
        raise ValueError(f"the worker's Response has status {status}; it must be 200-599")
    body = b"" if status in (204, 304) else response.body_bytes()
    out = HTTPResponse(content=b"" if head else body, status_code=status)
    raw = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.items()
        if name not in _FRAMING
    ]
    if status not in (204, 304):
        raw.append((b"content-length", str(len(body)).encode()))
    out.raw_headers = raw
    return out
