"""The Worker Loader API, against both the sandboxed Loader and the InProcessLoader."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from dynamic_workflows.sandbox.loader import InProcessLoader, Loader
from dynamic_workflows.sandbox.runtime import NO_NETWORK_MESSAGE
from dynamic_workflows.workers import Request, Response

from .conftest import HttpServer, worker_code

API = """
    import json
    from workers import Response, WorkerEntrypoint
    from helpers import shout
    import greeting

    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            body = await request.text()
            return Response(
                shout(f"{request.method} {request.url} {body} {greeting.default}"),
                status=201, headers={"x-tenant": self.env.NAME},
            )

        async def add(self, a, b=0):
            return {"sum": a + b, "limit": self.env.LIMIT}

        async def fail(self):
            raise ValueError("tenant says no")

    class Api(WorkerEntrypoint):
        async def counter_flow(self):
            first = await self.env.COUNTER.hit("a")
            handle = await self.env.COUNTER.make("h-1")
            status = await handle.status()
            return {"first": first, "id": handle.id, "status": status, "n": self.env.COUNTER.n}

        async def get(self, url):
            response = await fetch(url, method="POST", body="ping")
            return {"status": response.status, "text": await response.text(),
                    "x": response.headers.get("x-test")}
"""
HELPERS = "def shout(text):\n    return text.upper()\n"


def api_code(**fields: Any) -> dict[str, Any]:
    code = worker_code(API, **fields)
    code["modules"]["helpers.py"] = HELPERS
    code["modules"]["greeting.txt"] = {"text": "hi"}
    return code


class Handle:
    def __init__(self, id: str) -> None:
        self.id = id

    async def status(self) -> str:
        return f"status of {self.id}"


class Counter:
    """A host object given to tenant code as a binding."""

    n = 0

    def __init__(self) -> None:
        self.hits: list[str] = []

    async def hit(self, name: str) -> int:
        self.hits.append(name)
        return len(self.hits)

    async def make(self, id: str) -> Handle:
        return Handle(id)


class Outbound:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def fetch(self, request: Request) -> Response:
        self.seen.append(request.url)
        return Response("from the outbound binding", status=203, headers={"x-test": "binding"})


@pytest.fixture(params=["sandbox", "in-process"])
async def any_loader(request: pytest.FixtureRequest, loader: Loader) -> AsyncIterator[Any]:
    if request.param == "sandbox":
        yield loader
    else:
        async with InProcessLoader() as in_process:
            yield in_process


async def test_get_caches_by_id_and_calls_get_code_once(any_loader: Any) -> None:
    calls: list[int] = []

    def get_code() -> dict[str, Any]:
        calls.append(1)
        return api_code(env={"NAME": "acme", "LIMIT": 3})

    for _ in range(3):
        entry = any_loader.get("acme", get_code).get_entrypoint()
        assert (await entry.add(1, b=2)) == {"sum": 3, "limit": 3}
    assert calls == [1]


async def test_async_get_code(any_loader: Any) -> None:
    async def get_code() -> dict[str, Any]:
        return api_code(env={"NAME": "a", "LIMIT": 1})

    stub = any_loader.get("async", get_code)
    assert stub.id == "async"
    assert (await stub.getEntrypoint().add(2))["sum"] == 2


async def test_load_is_never_cached(any_loader: Any) -> None:
    source = """
        from workers import WorkerEntrypoint
        COUNT = []
        class Default(WorkerEntrypoint):
            async def bump(self):
                COUNT.append(1)
                return len(COUNT)
    """
    one, two = any_loader.load(worker_code(source)), any_loader.load(worker_code(source))
    assert one.id != two.id
    assert await one.get_entrypoint().bump() == 1
    assert await one.get_entrypoint().bump() == 2  # the same worker while it lives
    assert await two.get_entrypoint().bump() == 1  # a fresh one


async def test_fetch_crosses_as_data(any_loader: Any) -> None:
    stub = any_loader.get("acme", lambda: api_code(env={"NAME": "acme", "LIMIT": 1}))
    response = await stub.get_entrypoint().fetch(
        "https://t.example/p?q=1", method="PUT", body="payload"
    )
    assert isinstance(response, Response)
    assert response.status == 201
    assert response.headers.get("x-tenant") == "acme"
    assert await response.text() == "PUT HTTPS://T.EXAMPLE/P?Q=1 PAYLOAD HI"
    request = Request("https://t.example/r", method="POST", body=b"raw")
    assert (await stub.get_entrypoint().fetch(request)).status == 201


async def test_rpc_errors_propagate_by_name(any_loader: Any) -> None:
    stub = any_loader.get("acme", lambda: api_code(env={"NAME": "acme", "LIMIT": 1}))
    with pytest.raises(ValueError, match="tenant says no"):
        await stub.get_entrypoint().fail()
    with pytest.raises(TypeError, match="entrypoint 'Default' has no method 'nope'"):
        await stub.get_entrypoint().nope()
    with pytest.raises(TypeError, match="the main module has no entrypoint named 'Missing'"):
        await stub.get_entrypoint("Missing").add(1)


async def test_env_values_and_capability_bindings(any_loader: Any) -> None:
    counter = Counter()
    stub = any_loader.get(
        "caps", lambda: api_code(env={"NAME": "c", "LIMIT": 1, "COUNTER": counter})
    )
    result = await stub.get_entrypoint("Api").counter_flow()
    assert result == {"first": 1, "id": "h-1", "status": "status of h-1", "n": 0}
    assert counter.hits == ["a"]


async def test_global_outbound_none_blocks_fetch(any_loader: Any, http_server: HttpServer) -> None:
    stub = any_loader.get(
        "offline", lambda: api_code(env={"NAME": "o", "LIMIT": 1}, globalOutbound=None)
    )
    with pytest.raises(RuntimeError) as info:
        await stub.get_entrypoint("Api").get(http_server.url + "/x")
    assert str(info.value) == NO_NETWORK_MESSAGE
    assert str(info.value).startswith(
        "This worker is not permitted to access the internet via global functions like fetch()."
    )
    assert http_server.requests == []


async def test_global_outbound_omitted_fetches_through_the_host(
    any_loader: Any, http_server: HttpServer
) -> None:
    stub = any_loader.get("online", lambda: api_code(env={"NAME": "o", "LIMIT": 1}))
    result = await stub.get_entrypoint("Api").get(http_server.url + "/hello")
    assert result == {"status": 201, "text": "POST /hello ping", "x": "yes"}
    assert http_server.requests == [("POST", "/hello", b"ping")]


async def test_global_outbound_binding_gets_every_request(any_loader: Any) -> None:
    outbound = Outbound()
    stub = any_loader.get(
        "routed", lambda: api_code(env={"NAME": "o", "LIMIT": 1}, global_outbound=outbound)
    )
    result = await stub.get_entrypoint("Api").get("https://anywhere.example/x")
    assert result == {"status": 203, "text": "from the outbound binding", "x": "binding"}
    assert outbound.seen == ["https://anywhere.example/x"]


async def test_bad_code_fails_the_call_with_the_field(any_loader: Any) -> None:
    stub = any_loader.get("bad", lambda: {"main_module": "main.py"})
    with pytest.raises(Exception, match=r"WorkerCode\.modules: is required"):
        await stub.get_entrypoint().add(1)
    broken = any_loader.load(worker_code("def oops(:\n"))
    with pytest.raises(SyntaxError):
        await broken.get_entrypoint().add(1)
