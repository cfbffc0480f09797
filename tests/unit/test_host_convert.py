"""HTTP conversion between the server and dispatcher code, and the host's ``workers.fetch``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest

from dynamic_workflows.host.convert import (
    DEFAULT_MAX_BODY,
    BodyTooLargeError,
    parse_size,
    read_request,
    response_parts,
    size_text,
    to_http_response,
    to_workers_request,
)
from dynamic_workflows.workers import FetchResponse, Request, Response, fetch
from dynamic_workflows.workers._fetch import use_http_client


def http_request(
    method: str = "POST",
    path: str = "/api/run",
    query: bytes = b"a=1&b=two",
    headers: list[tuple[bytes, bytes]] | None = None,
    chunks: tuple[bytes, ...] = (b'{"x":', b" 1}"),
) -> HTTPRequest:
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers
        if headers is not None
        else [
            (b"host", b"example.test:8787"),
            (b"x-tenant-id", b"acme"),
            (b"accept", b"text/html"),
            (b"accept", b"application/json"),
        ],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8787),
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ] or [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return HTTPRequest(scope, receive)


async def test_request_keeps_method_url_headers_and_body() -> None:
    request = await to_workers_request(http_request())
    assert request.method == "POST"
    assert request.url == "http://example.test:8787/api/run?a=1&b=two"
    assert request.headers.get("x-tenant-id") == "acme"
    assert request.headers.get("accept") == "text/html, application/json"
    assert [k for k, _ in request.headers.items()].count("accept") == 2
    assert await request.json() == {"x": 1}


async def test_request_without_body() -> None:
    request = await to_workers_request(http_request(method="GET", query=b"", chunks=()))
    assert request.method == "GET"
    assert request.url == "http://example.test:8787/api/run"
    assert await request.bytes() == b""
    assert await request.json() is None


async def test_request_body_limit() -> None:
    with pytest.raises(BodyTooLargeError):
        await to_workers_request(http_request(chunks=(b"x" * 10, b"y" * 10)), max_body=15)
    declared = [(b"host", b"h"), (b"content-length", b"999")]
    with pytest.raises(BodyTooLargeError):
        await to_workers_request(http_request(headers=declared), max_body=15)


@pytest.mark.parametrize(
    ("path", "query", "headers", "server", "scheme"),
    [
        ("/api/run", b"a=1&b=two", None, ("127.0.0.1", 8787), "http"),
        ("/", b"", [(b"host", b"example.test")], ("127.0.0.1", 80), "http"),
        ("/x", b"q", [], ("127.0.0.1", 80), "http"),  # no host header: the server address
        ("/x", b"", [], ("::1", 8443), "https"),
        ("/x", b"", [], None, "http"),  # neither: a relative URL
        ("//x?#\\", b"", [(b"host", b"h:99999")], ("10.0.0.1", 81), "http"),  # bad port
        ("/x", b"", [(b"Host", b"upper"), (b"host", b"a"), (b"host", b"b")], None, "http"),
    ],
)
async def test_read_request_is_what_the_starlette_request_gives(
    path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]] | None,
    server: tuple[str, int] | None,
    scheme: str,
) -> None:
    for _ in range(2):  # the second time from the cache of URLs
        starlette = http_request(path=path, query=query, headers=headers)
        starlette.scope.update(server=server, scheme=scheme)
        expected = await to_workers_request(starlette)
        asgi = http_request(path=path, query=query, headers=headers)
        asgi.scope.update(server=server, scheme=scheme)
        got = await read_request(asgi.scope, asgi.receive)
        assert (got.url, got.method, got.headers.items()) == (
            expected.url,
            expected.method,
            expected.headers.items(),
        )
        assert await got.bytes() == await expected.bytes()


async def test_read_request_body_limit_and_disconnect() -> None:
    chunks = http_request(chunks=(b"x" * 10, b"", b"y" * 10))
    with pytest.raises(BodyTooLargeError, match=r"^request body is over the host's limit of 15 b"):
        await read_request(chunks.scope, chunks.receive, max_body=15)
    declared = http_request(headers=[(b"host", b"h"), (b"content-length", b"999")])
    with pytest.raises(BodyTooLargeError, match=r"^request body of 999 bytes is over the host's "):
        await read_request(declared.scope, declared.receive, max_body=15)
    whole = http_request(chunks=(b"ab", b"", b"cd"))
    assert await (await read_request(whole.scope, whole.receive)).bytes() == b"abcd"

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    with pytest.raises(ClientDisconnect):
        await read_request(http_request().scope, gone)


def test_response_parts_are_the_http_response() -> None:
    worker = Response("hi", status=201, headers=[("x-a", "1"), ("connection", "close")])
    status, headers, body = response_parts(worker)
    out = to_http_response(worker)
    assert (status, headers, body) == (out.status_code, out.raw_headers, out.body)
    assert response_parts(worker, head=True) == (201, headers, b"")


def test_response_status_headers_and_body() -> None:
    worker = Response(
        "created",
        status=201,
        headers=[
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("content-length", "999"),  # wrong on purpose: recomputed
            ("transfer-encoding", "chunked"),
            ("x-custom", "yes"),
        ],
    )
    out = to_http_response(worker)
    assert out.status_code == 201
    assert out.body == b"created"
    raw = [(k.decode(), v.decode()) for k, v in out.raw_headers]
    assert raw.count(("set-cookie", "a=1")) == 1
    assert raw.count(("set-cookie", "b=2")) == 1
    assert ("x-custom", "yes") in raw
    assert ("content-type", "text/plain;charset=UTF-8") in raw
    assert [v for k, v in raw if k == "content-length"] == ["7"]
    assert not any(k == "transfer-encoding" for k, _ in raw)


def test_json_head_and_empty_responses() -> None:
    out = to_http_response(Response.json({"id": "x"}))
    assert out.body == b'{"id":"x"}'
    assert (b"content-type", b"application/json") in out.raw_headers
    head = to_http_response(Response.json({"id": "x"}), head=True)
    assert head.body == b""
    assert (b"content-length", b"10") in head.raw_headers  # the length a GET would get
    empty = to_http_response(Response("ignored", status=204))
    assert empty.body == b""
    assert not any(k == b"content-length" for k, _ in empty.raw_headers)
    with pytest.raises(ValueError, match="status 101"):
        to_http_response(Response("", status=101))


async def test_fetch_through_the_bound_client() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            418, json={"echo": request.content.decode()}, headers={"x-teapot": "1"}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with use_http_client(client):
            response = await fetch(
                "https://api.example/brew", method="POST", headers={"x-a": "b"}, body="tea"
            )
            via_request = await fetch(Request("https://api.example/get"), {"method": "GET"})
    assert isinstance(response, FetchResponse)
    assert response.status == 418
    assert not response.ok
    assert response.headers.get("x-teapot") == "1"
    assert await response.json() == {"echo": "tea"}  # on a fetched response, json() reads it
    assert FetchResponse.json({"a": 1}).status == 200  # on the class, it still builds one
    assert seen[0].method == "POST"
    assert seen[0].headers["x-a"] == "b"
    assert via_request.status == 418
    assert seen[1].method == "GET"


async def test_fetch_errors() -> None:
    with pytest.raises(TypeError, match="http and https URLs only"):
        await fetch("ftp://example/")
    with pytest.raises(TypeError, match="unsupported option"):
        await fetch("https://example/", redirect="manual")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        with use_http_client(client), pytest.raises(ConnectionError, match="connection refused"):
            await fetch("https://down.example/")


async def test_a_body_over_the_limit_is_refused_unread() -> None:
    # Declared too large: refused before anything is received. Streamed (chunked): no further
    # than the chunk that goes over.
    received: list[int] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": True}

    declared = http_request(headers=[(b"content-length", str(11 << 20).encode())])
    with pytest.raises(BodyTooLargeError, match=r"over the host's limit of 10 MiB$"):
        await read_request(declared.scope, receive)  # the default limit
    assert received == []
    with pytest.raises(BodyTooLargeError, match=r"^request body is over the host's limit of 3 MiB"):
        await read_request(http_request(headers=[]).scope, receive, max_body=3 << 20)
    assert len(received) == 4
    assert DEFAULT_MAX_BODY == 10 << 20


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MiB", 10 << 20),
        ("10 MB", 10_000_000),
        ("512k", 512 << 10),
        ("512KiB", 512 << 10),
        ("1G", 1 << 30),
        ("1048576", 1 << 20),
        (" 7b ", 7),
    ],
)
def test_sizes_are_parsed(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "1.5M", "10 MiBs", "-1", "\u0661\u0660", "10 T"])
def test_a_size_that_is_not_one_names_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a size: write e.g. 10MiB, 512KiB"):
        parse_size(text)


def test_sizes_are_written_for_people() -> None:
    assert [size_text(n) for n in (10 << 20, 1536, 1000, 1 << 30, (1 << 20) + 1)] == [
        "10 MiB",
        "1536 bytes",
        "1000 bytes",
        "1 GiB",
        "1048577 bytes",
    ]
