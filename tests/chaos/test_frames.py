"""A compromised worker: what it writes on its socket is garbage, oversized, of the wrong
version, truncated or a message it has no business sending. The host's side of the worker
(``sandbox/process.py`` ``WorkerProcess``, over ``framing.py`` and ``protocol.py``) must fail
the call in flight at once, kill the process, drop the worker, and carry on with others.

The worker is faked: a socketpair whose far end this test writes, and a stand-in process
(``sleep``) whose pidfd the host gets, so that we see whether the host killed it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from dynamic_workflows.sandbox.code import WorkerCode, WorkerLimits
from dynamic_workflows.sandbox.confine import ConfinementPolicy
from dynamic_workflows.sandbox.errors import TenantWorkerError
from dynamic_workflows.sandbox.framing import HEADER_SIZE, encode_frame
from dynamic_workflows.sandbox.process import WorkerProcess
from dynamic_workflows.sandbox.protocol import (
    PROTOCOL_VERSION,
    Call,
    Codec,
    Hello,
    Load,
    Result,
)

pytestmark = pytest.mark.chaos

MAX_FRAME = 1 << 20
pack = msgspec.msgpack.encode


def frame(value: Any) -> bytes:
    """One frame holding ``value`` encoded as msgpack (any shape, even a wrong one)."""
    return encode_frame(pack(value), MAX_FRAME)


def ext(code: int, value: Any) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(code, pack(value))


class FakeZygote:
    """What a WorkerProcess asks of its fork server: how the process ended."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    async def exit_status(self, pid: int, timeout: float) -> int | None:
        for _ in range(max(1, int(timeout / 0.01))):
            code = self.proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.01)
        return None


@dataclass
class Fake:
    """A worker as the host sees it, and the far end of its socket."""

    worker: WorkerProcess
    proc: subprocess.Popen[bytes]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    closed: list[WorkerProcess] = field(default_factory=list)

    async def read(self) -> Any:
        header = await self.reader.readexactly(HEADER_SIZE)
        (size,) = struct.unpack(">I", header)
        return Codec().decode(await self.reader.readexactly(size))

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def serve_one_call(self) -> None:
        """Answer the next Call as a healthy worker would."""
        call = await self.read()
        assert isinstance(call, Call)
        self.write(encode_frame(Codec().encode(Result(call.id, "pong")), MAX_FRAME))


@asynccontextmanager
async def fake_worker(hello: bytes | None = None) -> AsyncIterator[Fake]:
    """A started and loaded WorkerProcess whose worker end is ours (``hello``: its first
    bytes instead of a proper Hello; then it is only connected, not started)."""
    proc = await asyncio.to_thread(subprocess.Popen, ["sleep", "60"])
    host_end, worker_end = socket.socketpair()
    closed: list[WorkerProcess] = []
    import os

    worker = WorkerProcess(
        FakeZygote(proc),  # type: ignore[arg-type]
        proc.pid,
        os.pidfd_open(proc.pid),
        host_end,
        policy=ConfinementPolicy(),
        max_frame=MAX_FRAME,
        on_call_started=lambda w: None,
        on_closed=closed.append,
    )
    reader, writer = await asyncio.open_connection(sock=worker_end)
    fake = Fake(worker, proc, reader, writer, closed)
    try:
        writer.write(
            hello
            if hello is not None
            else encode_frame(Codec().encode(Hello(PROTOCOL_VERSION, proc.pid, "fake")))
        )
        await worker.start(timeout=2)
        code = WorkerCode.from_value({"main_module": "m.py", "modules": {"m.py": ""}})
        loading = asyncio.ensure_future(worker.load("tenant", code, WorkerLimits(wall_ms=5000)))
        load = await fake.read()
        assert isinstance(load, Load)
        writer.write(encode_frame(Codec().encode(Result(load.id)), MAX_FRAME))
        await loading
        yield fake
    finally:
        worker.kill("the test is over")
        worker.cancel_tasks()
        writer.close()
        proc.kill()
        proc.wait()


def bad_request_extension() -> bytes:
    # A Fetch whose request is an extension of the right code and the wrong shape.
    return frame(["Fetch", 7, 1, ext(2, [1])])


HOSTILE: dict[str, Callable[[], bytes]] = {
    "not msgpack": lambda: encode_frame(b"\xc1" * 16),
    "msgpack, not a message": lambda: frame({"hello": "world"}),
    "an unknown message": lambda: frame(["Teleport", 1]),
    "wrong field types": lambda: frame(["Result", "one", None, None]),
    "missing fields": lambda: frame(["StepComplete", 1]),
    "a frame over the limit": lambda: struct.pack(">I", MAX_FRAME + 1) + b"\0" * 64,
    "a 4 GiB length": lambda: b"\xff\xff\xff\xff" + b"\0" * 64,
    "a request extension of the wrong shape": bad_request_extension,
    "a response extension of the wrong shape": lambda: frame(["Result", 1, ext(3, "x"), None]),
    "a capability extension of the wrong shape": lambda: frame(["Result", 1, ext(1, "x"), None]),
    "an unknown extension": lambda: frame(["Result", 1, ext(9, 1), None]),
    "a capability it does not hold": lambda: frame(["Result", 1, ext(1, [4242, {}]), None]),
    "a message only the host sends": lambda: frame(["Shutdown"]),
    "a second hello": lambda: frame(["Hello", PROTOCOL_VERSION, 1, "", None]),
    "a hello of another version": lambda: frame(["Hello", PROTOCOL_VERSION + 1, 1, "", None]),
    "a run request to the host": lambda: frame(["Load", 1, "t", "m.py", [], {}, "none"]),
    "deeply nested values": lambda: encode_frame(b"\x91" * 100_000 + b"\xc0"),
    "a frame cut short, then the connection closed": lambda: struct.pack(">I", 100) + b"x" * 10,
}


@pytest.mark.parametrize("what", sorted(HOSTILE))
async def test_a_worker_writing_garbage_is_killed_and_dropped(what: str) -> None:
    async with fake_worker() as fake:
        call = asyncio.ensure_future(fake.worker.call(None, "fetch", [], {}))
        assert isinstance(await fake.read(), Call)
        fake.write(HOSTILE[what]())
        if what.startswith("a frame cut short"):
            fake.writer.close()
        with pytest.raises(TenantWorkerError):
            await asyncio.wait_for(call, 3)
        assert fake.closed == [fake.worker]
        assert fake.worker.dead
        # The process itself is gone: killed by the host, not left to notice on its own.
        assert await asyncio.to_thread(fake.proc.wait, 3) == -9
    # The host carries on with other workers.
    async with fake_worker() as other:
        serving = asyncio.ensure_future(other.serve_one_call())
        assert await asyncio.wait_for(other.worker.call(None, "ping", [], {}), 3) == "pong"
        await serving


@pytest.mark.parametrize(
    "hello",
    [
        encode_frame(b"\xc1"),
        frame(["Hello", PROTOCOL_VERSION + 1, 1, "", None]),
        frame(["Result", 1, None, None]),
        b"\xff\xff\xff\xff",
    ],
    ids=["garbage", "another version", "not a hello", "a 4 GiB length"],
)
async def test_a_worker_with_a_bad_handshake_never_starts(hello: bytes) -> None:
    with pytest.raises(TenantWorkerError):
        async with fake_worker(hello):
            raise AssertionError("it started")


async def test_answers_to_calls_never_made_are_ignored_and_the_worker_serves_on() -> None:
    async with fake_worker() as fake:
        for i in range(10_000):
            fake.write(encode_frame(Codec().encode(Result(10_000 + i, "stray")), MAX_FRAME))
        serving = asyncio.ensure_future(fake.serve_one_call())
        assert await asyncio.wait_for(fake.worker.call(None, "ping", [], {}), 3) == "pong"
        await serving
        assert not fake.worker.dead
