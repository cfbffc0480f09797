"""Framing and the versioned message protocol."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from typing import Any

import msgspec
import pytest

from dynamic_workflows.core.journal import Completed, ErrorInfo, JournalEntry, Suspended
from dynamic_workflows.core.limits import Limits
from dynamic_workflows.sandbox.errors import FrameTooLargeError, ProtocolError, ProtocolVersionError
from dynamic_workflows.sandbox.framing import (
    FrameProtocol,
    encode_frame,
    read_frame,
    recv_frame,
    send_frame,
)
from dynamic_workflows.sandbox.protocol import (
    PROTOCOL_VERSION,
    Call,
    CapCall,
    CapRef,
    Codec,
    Hello,
    Reply,
    Run,
    RunResult,
    StepAttempt,
    StepWaitForEvent,
    check_hello,
)
from dynamic_workflows.workers import Request, Response


def test_every_message_round_trips() -> None:
    codec = Codec(resolve=lambda ref: ref)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    journal = [JournalEntry("a", 1, "do", "done", value=b'"x"')]
    messages = [
        Hello(PROTOCOL_VERSION, 42, "sandbox: full"),
        Call(1, None, "fetch", [Request("https://x/", method="POST", body=b"hi")], {}),
        Call(2, "Api", "add", [1, 2.5, "s", None, [True]], {"k": {"n": 1}}),
        Run(
            3,
            "Flow",
            {"payload": {"n": 1}, "timestamp": now, "instanceId": "i"},
            journal,
            1.5,
            Limits(),
        ),
        RunResult(3, Completed(b"1")),
        RunResult(4, Suspended(12.5, paused=True)),
        CapCall(5, 2, 7, "create", [], {"params": {"a": 1}}),
        StepWaitForEvent(6, 3, "w", 1, "approval", 60.0),
        StepAttempt(3, "s", 1, 2, None),
        Reply(6, None, ErrorInfo("RunCancelled", "gone")),
    ]
    for message in messages:
        assert codec.decode(codec.encode(message)) == message or isinstance(message, Call)
    call = codec.decode(codec.encode(messages[1]))
    assert isinstance(call, Call)
    request = call.args[0]
    assert isinstance(request, Request)
    assert (request.method, request.url, request.body_bytes()) == ("POST", "https://x/", b"hi")
    run = codec.decode(codec.encode(messages[3]))
    assert isinstance(run, Run)
    assert run.event["timestamp"] == now
    assert run.journal == journal


def test_responses_and_capabilities_cross_inside_values() -> None:
    class Binding:
        id = "inst-1"

        def status(self) -> None: ...

    exported: list[object] = []

    def export(obj: object) -> CapRef:
        exported.append(obj)
        return CapRef(len(exported), {"id": getattr(obj, "id", None)})

    host = Codec(export=export)
    worker = Codec(resolve=lambda ref: ref)
    value = {"r": Response("ok", status=202, headers={"x-a": "1"}), "b": [Binding()]}
    message = worker.decode(host.encode(Reply(1, value)))
    assert isinstance(message, Reply)
    response, ref = message.value["r"], message.value["b"][0]
    assert isinstance(response, Response)
    assert (response.status, response.headers.get("x-a"), response.body_bytes()) == (
        202,
        "1",
        b"ok",
    )
    assert isinstance(ref, CapRef)
    assert (ref.id, ref.attrs) == (1, {"id": "inst-1"})


def test_objects_that_cannot_cross_are_named() -> None:
    with pytest.raises(TypeError, match="a object cannot be sent across the worker boundary"):
        Codec().encode(Reply(1, object()))


def test_version_mismatch_is_a_clear_error() -> None:
    hello = Codec().encode(Hello(PROTOCOL_VERSION, 1))
    assert check_hello(hello).pid == 1
    future = msgspec.msgpack.encode(["Hello", PROTOCOL_VERSION + 1, 1, "", None, "new field"])
    with pytest.raises(
        ProtocolVersionError,
        match=(
            rf"this side speaks version {PROTOCOL_VERSION}, "
            rf"the peer speaks {PROTOCOL_VERSION + 1}"
        ),
    ):
        check_hello(future)
    with pytest.raises(ProtocolError, match="expected a Hello"):
        check_hello(Codec().encode(Reply(1)))


def test_malformed_message() -> None:
    with pytest.raises(ProtocolError, match="malformed message"):
        Codec().decode(b"\x93\xa5Bogus\x01\x02")


def test_oversize_frames_are_refused_before_buffering() -> None:
    with pytest.raises(FrameTooLargeError, match="frame of 11 bytes exceeds the limit of 10"):
        encode_frame(b"x" * 11, max_size=10)
    a, b = socket.socketpair()
    with a, b:
        send_frame(a, b"hello")
        assert recv_frame(b) == b"hello"
        a.sendall((1 << 30).to_bytes(4, "big"))
        with pytest.raises(FrameTooLargeError, match="1,073,741,824 bytes"):
            recv_frame(b, max_size=1024)


async def test_frame_protocol_splits_and_rejects() -> None:
    frames: list[bytes] = []
    closed: list[BaseException | None] = []
    proto = FrameProtocol(frames.append, closed.append, max_size=100)
    data = encode_frame(b"one") + encode_frame(b"") + encode_frame(b"three")
    for i in range(len(data)):  # byte by byte: frames cut anywhere
        proto.data_received(data[i : i + 1])
    proto.data_received(encode_frame(b"four"))
    assert frames == [b"one", b"", b"three", b"four"]
    proto.data_received((101).to_bytes(4, "big"))
    assert len(closed) == 1
    assert isinstance(closed[0], FrameTooLargeError)


async def test_read_frame_on_streams() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(encode_frame(b"abc") + b"\x00\x00")
    reader.feed_eof()
    assert await read_frame(reader) == b"abc"
    with pytest.raises(ProtocolError, match="inside a frame header"):
        await read_frame(reader)


class _Peer:
    """What a FrameProtocol at the other end of a connection received."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed: list[BaseException | None] = []

    def protocol(self) -> FrameProtocol:
        return FrameProtocol(self.frames.append, self.closed.append)


async def _framed(sock: socket.socket, peer: _Peer | None = None) -> FrameProtocol:
    """A FrameProtocol on ``sock`` (one end of a socket pair), on the running loop."""
    loop = asyncio.get_running_loop()
    factory = (peer or _Peer()).protocol
    _, proto = await loop.connect_accepted_socket(factory, sock=sock)
    return proto


def _pending(sock: socket.socket) -> bytes:
    """What has arrived on a non-blocking raw socket so far (b"" if nothing)."""
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


class _CountingTransport:
    """Wraps a transport and counts its write calls."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self._transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        self.writes += 1
        self._transport.writelines(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


def _count_writes(proto: FrameProtocol) -> _CountingTransport:
    counting = _CountingTransport(proto.transport)  # type: ignore[arg-type]
    proto.transport = counting  # type: ignore[assignment]
    return counting


async def test_frames_sent_in_one_iteration_leave_together_at_its_end() -> None:
    a, b = socket.socketpair()
    b.setblocking(False)
    with b:
        proto = await _framed(a)
        counting = _count_writes(proto)
        frames = [b"one", b"", b"three", b"x" * 1000]
        for frame in frames:
            proto.send(frame)
        assert _pending(b) == b""  # nothing left during the iteration
        assert counting.writes == 0
        await asyncio.sleep(0)
        assert _pending(b) == b"".join(encode_frame(f) for f in frames)  # all, in order
        assert counting.writes == 1  # in one write
        # The next iteration's frames leave at its end, once.
        proto.send(b"again")
        assert _pending(b) == b""
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert _pending(b) == encode_frame(b"again")
        assert counting.writes == 2
        proto.close()


async def test_flush_writes_at_once() -> None:
    a, b = socket.socketpair()
    b.setblocking(False)
    with b:
        proto = await _framed(a)
        proto.send(b"first")
        proto.send(b"second")
        proto.flush()
        assert _pending(b) == encode_frame(b"first") + encode_frame(b"second")
        proto.flush()  # nothing queued: nothing written
        await asyncio.sleep(0)  # the end-of-iteration flush has nothing left to write
        await asyncio.sleep(0)
        assert _pending(b) == b""
        proto.close()


async def test_send_now_writes_at_once_after_what_is_queued() -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    with b:
        proto = await _framed(a)
        counting = _count_writes(proto)
        scheduled = 0
        call_soon = loop.call_soon

        def counting_call_soon(*args: Any, **kwargs: Any) -> asyncio.Handle:
            nonlocal scheduled
            scheduled += 1
            return call_soon(*args, **kwargs)

        loop.call_soon = counting_call_soon  # type: ignore[method-assign]
        try:
            # Nothing queued: one write at once, and no end-of-iteration flush scheduled.
            proto.send(b"notice", now=True)
            assert _pending(b) == encode_frame(b"notice")
            assert (counting.writes, scheduled) == (1, 0)
            # Frames queued before it leave first, in the same write.
            proto.send(b"queued")
            proto.send(b"x" * 70_000, now=True)  # a large one, written in two parts
            assert counting.writes == 2
        finally:
            loop.call_soon = call_soon  # type: ignore[method-assign]
        await asyncio.sleep(0)
        arrived = _pending(b)
        while len(arrived) < len(encode_frame(b"queued")) + len(encode_frame(b"x" * 70_000)):
            await asyncio.sleep(0.001)
            arrived += _pending(b)
        assert arrived == encode_frame(b"queued") + encode_frame(b"x" * 70_000)
        proto.close()


async def test_close_writes_what_is_queued_then_closes() -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    with b:
        peer = _Peer()
        proto = await _framed(a, peer)
        proto.send(b"last")
        proto.send(b"words")
        proto.close()
        received = bytearray()
        while chunk := await asyncio.wait_for(loop.sock_recv(b, 1 << 16), 5):
            received += chunk
        assert bytes(received) == encode_frame(b"last") + encode_frame(b"words")  # then EOF
        for _ in range(10):
            await asyncio.sleep(0)
        assert proto.closed
        assert peer.closed == [None]
        with pytest.raises(ProtocolError, match="connection is closed"):
            proto.send(b"late")


async def test_send_on_a_closed_connection_raises_at_once() -> None:
    a, b = socket.socketpair()
    b.setblocking(False)
    with b:
        proto = await _framed(a)
        proto.close()
        with pytest.raises(ProtocolError, match="connection is closed"):
            proto.send(b"x")  # the transport is closing
        for _ in range(10):
            await asyncio.sleep(0)
        assert proto.closed
        with pytest.raises(ProtocolError, match="connection is closed"):
            proto.send(b"x")  # and gone
        assert _pending(b) == b""
    unconnected = FrameProtocol(lambda frame: None, lambda exc: None)
    with pytest.raises(ProtocolError, match="connection is closed"):
        unconnected.send(b"x")


async def test_send_refuses_an_oversize_frame_at_once() -> None:
    a, b = socket.socketpair()
    b.setblocking(False)
    with b:
        loop = asyncio.get_running_loop()
        _, proto = await loop.connect_accepted_socket(
            lambda: FrameProtocol(lambda frame: None, lambda exc: None, max_size=10), sock=a
        )
        proto.send(b"ok")
        with pytest.raises(FrameTooLargeError, match="frame of 11 bytes exceeds the limit of 10"):
            proto.send(b"x" * 11)
        await asyncio.sleep(0)
        assert _pending(b) == encode_frame(b"ok")  # the refused frame was not queued
        proto.close()


async def test_large_frames_arrive_intact() -> None:
    a, b = socket.socketpair()
    peer = _Peer()
    sender = await _framed(a)
    receiver = await _framed(b, peer)
    large = bytes(range(256)) * (4 * 1024 + 1)  # 1 MiB + 256 bytes, more than a socket buffer
    edge = b"e" * 65536  # exactly the size where a frame goes out as header + payload
    frames = [b"before", large, edge, b"y" * 65535, b"after"]
    for frame in frames:
        sender.send(frame)
    deadline = asyncio.get_running_loop().time() + 5
    while len(peer.frames) < len(frames):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)
    assert peer.frames == frames
    sender.close()
    receiver.close()
    for _ in range(10):
        await asyncio.sleep(0)
