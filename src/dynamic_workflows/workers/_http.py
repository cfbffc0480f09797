"""``Request``, ``Response`` and ``Headers`` as in Cloudflare's Python SDK, as plain data so they
can cross a process boundary (method, URL, headers, body)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..core.codec import decode, encode

__all__ = ["Headers", "Request", "Response", "incoming_request", "make_request"]

HeadersInit = Mapping[str, str] | Iterable[tuple[str, str]] | None


class Headers:
    """Case-insensitive multi-valued HTTP headers."""

    __slots__ = ("_items",)

    def __init__(self, init: HeadersInit | Headers = None) -> None:
        self._items: list[tuple[str, str]] = []
        if isinstance(init, Headers):
            self._items = list(init._items)
        elif isinstance(init, Mapping):
            self._items = [(str(k).lower(), str(v)) for k, v in init.items()]
        elif init is not None:
            self._items = [(str(k).lower(), str(v)) for k, v in init]

    @classmethod
    def _of(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers holding ``items`` as they are: names lowercased already, values str."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The values of ``name`` joined by ``, ``, or ``default``."""
        name = name.lower()
        values = [v for k, v in self._items if k == name]
        return ", ".join(values) if values else default

    def set(self, name: str, value: str) -> None:
        name = name.lower()
        self._items = [(k, v) for k, v in self._items if k != name]
        self._items.append((name, str(value)))

    def append(self, name: str, value: str) -> None:
        self._items.append((name.lower(), str(value)))

    def delete(self, name: str) -> None:
        name = name.lower()
        self._items = [(k, v) for k, v in self._items if k != name]

    def has(self, name: str) -> bool:
        name = name.lower()
        return any(k == name for k, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has(name)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _to_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    raise TypeError(f"body must be str or bytes, got {type(body).__name__}")


class Request:
    """An HTTP request: ``method``, ``url``, ``headers`` and a body read with ``await``."""

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: HeadersInit | Headers = None,
        body: str | bytes | None = None,
    ) -> None:
        self.url = url
        self.method = method.upper()
        self.headers = Headers(headers)
        self._body: builtins.bytes = _to_bytes(body)

    async def bytes(self) -> builtins.bytes:
        return self._body

    async def text(self) -> str:
        return self._body.decode()

    async def json(self) -> Any:
        return decode(self._body) if self._body else None

    def body_bytes(self) -> builtins.bytes:
        """The body, without awaiting (for the runtime)."""
        return self._body

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class Response:
    """An HTTP response; ``Response.json(data)`` builds a JSON one."""

    def __init__(
        self,
        body: str | bytes | None = None,
        status: int = 200,
        headers: HeadersInit | Headers = None,
        *,
        status_text: str = "",
    ) -> None:
        self.status = int(status)
        self.status_text = status_text
        self.headers = Headers(headers)
        self._body: builtins.bytes = _to_bytes(body)
        if isinstance(body, str) and not self.headers.has("content-type"):
            self.headers.set("content-type", "text/plain;charset=UTF-8")

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: HeadersInit | Headers = None) -> Response:
        response = cls(encode(data), status=status, headers=headers)
        if not response.headers.has("content-type"):
            response.headers.append("content-type", "application/json")
        return response

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    async def bytes(self) -> builtins.bytes:
        return self._body

    async def text(self) -> str:
        return self._body.decode()

    async def json_body(self) -> Any:
        return decode(self._body) if self._body else None

    def body_bytes(self) -> builtins.bytes:
        """The body, without awaiting (for the runtime)."""
        return self._body

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


def incoming_request(url: str, method: str, headers: list[tuple[str, str]], body: bytes) -> Request:
    """A Request as a server received it, built without re-checking its parts: ``headers`` are
    ``(name, value)`` pairs with lowercased names, kept as they are (the host's HTTP path)."""
    request = Request.__new__(Request)
    request.url = url
    request.method = method.upper()
    request.headers = Headers._of(headers)
    request._body = body
    return request


def make_request(resource: Any, init: Mapping[str, Any] | None = None, **options: Any) -> Request:
    """A Request from ``fetch``'s arguments: a URL or a Request, then ``method``, ``headers``,
    ``body`` (from ``init`` or keyword arguments)."""
    opts = dict(init or {})
    opts.update(options)
    unknown = set(opts) - {"method", "headers", "body"}
    if unknown:
        raise TypeError(f"fetch() got unsupported option(s) {sorted(unknown)}")
    if isinstance(resource, Request):
        return Request(
            resource.url,
            method=opts.get("method", resource.method),
            headers=opts.get("headers", resource.headers),
            body=opts.get("body", resource.body_bytes()),
        )
    if not isinstance(resource, str):
        raise TypeError(f"fetch() needs a URL string or a Request, got {type(resource).__name__}")
    return Request(
        resource,
        method=opts.get("method", "GET"),
        headers=opts.get("headers"),
        body=opts.get("body"),
    )
