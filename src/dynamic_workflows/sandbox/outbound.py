"""Outbound HTTP performed by the host on a tenant's behalf (``global_outbound`` omitted).

A confined worker has no network at all; its global ``fetch`` travels to the host, which makes
the request here with the standard library (``urllib`` in a thread: no extra dependency), and
sends the response back. Like ``fetch``, an HTTP error status is a response, not an exception.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

from ..workers import Request, Response

__all__ = ["fetch_via_host"]


async def fetch_via_host(request: Request, *, timeout: float = 30.0) -> Response:
    """Perform ``request`` from the host; raises ``ConnectionError`` when it cannot be sent."""
    if not request.url.startswith(("http://", "https://")):
        raise TypeError(f"fetch() supports http and https URLs only, not {request.url!r}")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _fetch_blocking, request, timeout)


def _fetch_blocking(request: Request, timeout: float) -> Response:
    body = request.body_bytes()
    req = urllib.request.Request(
        request.url,
        data=body if body or request.method not in ("GET", "HEAD") else None,
        method=request.method,
        headers=dict(request.headers.items()),
    )
    resp: Any
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        resp = exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(f"fetch {request.method} {request.url} failed: {reason}") from None
    with resp:
        data = resp.read()
        return Response(
            data,
            status=resp.status,
            headers=list(resp.headers.items()),
            status_text=str(resp.reason or ""),
        )
