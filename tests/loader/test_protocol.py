"""Framing and the versioned message protocol."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket

import msgspec
import pytest

from dynamic_workflows.journal import Completed, ErrorInfo, JournalEntry, Suspended
from dynamic_workflows.limits import Limits
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
