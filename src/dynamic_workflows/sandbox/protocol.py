"""The messages exchanged by the host and a worker process, version :data:`PROTOCOL_VERSION`.

Every frame (see :mod:`.framing`) holds one msgpack-encoded, tagged message. The worker speaks
first with :class:`Hello`; the host checks the version before decoding anything else.

The fork server has its own small set on its control socket (:class:`ZygoteReady`,
:class:`Spawn`, :class:`Spawned`, :class:`Exited`, :class:`Retire`); it never sees tenant code.

Host -> worker: :class:`Load` (tenant code, as data), :class:`Call` (``fetch`` or an RPC
method), :class:`Run` (a workflow's ``run`` with its journal), :class:`Pause`, :class:`Cancel`,
:class:`Ping`, :class:`Shutdown`, and :class:`Reply` to the worker's own requests.

Worker -> host: :class:`Hello`, :class:`Result` (of Load/Call), :class:`RunResult`,
:class:`Pong`, and requests answered by a :class:`Reply`: :class:`CapCall` (a method of a
binding), :class:`Fetch` (the tenant's global ``fetch``), and the step channel
(:class:`StepComplete`, :class:`StepFail`, :class:`StepSleep`, :class:`StepWaitForEvent`,
:class:`StepWake`). :class:`StepAttempt` and :class:`RunParked` are one-way: nothing answers
them.

Values inside messages (arguments, results, env) are msgpack data plus three extension types:
capability references (a binding living on the host), ``Request`` and ``Response``.

What tenant code prints or logs costs no message of its own: its lines ride on messages the
worker sends anyway (``logs``): a run's with its step messages and its :class:`RunResult`, the
rest (imports, ``fetch``, RPC) with the call's :class:`Result` (see :mod:`.capture`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ..core.journal import ErrorInfo, JournalEntry, RunOutcome
from ..core.limits import Limits
from ..core.logs import LogLine
from ..errors import SerializationError
from ..workers import Headers, Request, Response
from .errors import ProtocolError, ProtocolVersionError

__all__ = [
    "PROTOCOL_VERSION",
    "BaseMessage",
    "Call",
    "Cancel",
    "CapCall",
    "CapRef",
    "Codec",
    "ControlMessage",
    "Exited",
    "Fetch",
    "Hello",
    "Load",
    "Message",
    "ModuleData",
    "Pause",
    "Ping",
    "Pong",
    "Reply",
    "Result",
    "Retire",
    "Run",
    "RunParked",
    "RunResult",
    "Shutdown",
    "Spawn",
    "Spawned",
    "StepAttempt",
    "StepComplete",
    "StepFail",
    "StepSleep",
    "StepWaitForEvent",
    "StepWake",
    "ZygoteReady",
    "check_hello",
    "decode_control",
    "encode_control",
]

PROTOCOL_VERSION = 5
"""Bumped on any change to a message's fields or meaning. 5: rollbacks (``StepComplete`` and
``StepFail`` carry the step's ``rollback`` flag, a count below 0 is a rollback handler's entry,
and a ``RunResult``'s ``Failed`` outcome carries its ``rollback`` outcome) and the ``sensitive``
step option (``StepComplete`` and ``StepFail`` carry it)."""

EXT_CAPABILITY = 1
EXT_REQUEST = 2
EXT_RESPONSE = 3


class BaseMessage(msgspec.Struct, tag=True, array_like=True):
    """Base of every message; the tag is the class name."""


# -- handshake and control -------------------------------------------------------------------


class Hello(BaseMessage):
    """The worker is confined, warmed up and ready. Always the first frame."""

    version: int
    pid: int
    isolation: str = ""
    error: str | None = None
    """Set instead of serving when the worker could not be confined (fail closed)."""


class Ping(BaseMessage):
    """Liveness probe; the worker answers :class:`Pong` from its event loop."""

    id: int


class Pong(BaseMessage):
    """Answer to :class:`Ping`, with the worker's own accounting."""

    id: int
    cpu_seconds: float
    private_bytes: int | None = None
    """Private memory from ``/proc/self/smaps_rollup`` (None where it cannot be read)."""


class Shutdown(BaseMessage):
    """Exit now (the worker closes its socket and leaves)."""


class Cancel(BaseMessage):
    """Cancel the host-originated call ``id``."""

    id: int


class Pause(BaseMessage):
    """The instance behind the run ``call`` was paused (True) or resumed (False)."""

    call: int
    paused: bool


# -- host -> worker requests -------------------------------------------------------------------


class ModuleData(msgspec.Struct, array_like=True, frozen=True):
    """One tenant module. ``kind``: ``py``, ``text``, ``json`` or ``data``."""

    name: str
    kind: str
    data: Any


class Load(BaseMessage):
    """Load tenant code into this (fresh) worker. Answered by a :class:`Result`."""

    id: int
    tenant: str
    main_module: str
    modules: list[ModuleData]
    env: dict[str, Any]
    outbound: str
    """``host`` (the host fetches for the tenant), ``none`` (no network) or ``binding``."""
    memory_bytes: int | None = None
    compatibility_date: str | None = None
    compatibility_flags: list[str] = []


class Call(BaseMessage):
    """Call ``method`` (``fetch`` or an RPC method) of an entrypoint (None: ``Default``)."""

    id: int
    entrypoint: str | None
    method: str
    args: list[Any]
    kwargs: dict[str, Any] = {}
    props: dict[str, Any] | None = None


class Run(BaseMessage):
    """Run ``run(event, step)`` of a workflow entrypoint over the host's journal."""

    id: int
    entrypoint: str | None
    event: Any
    journal: list[JournalEntry]
    now: float
    limits: Limits
    paused: bool = False
    warm_horizon: float = 0.0
    """Seconds: a quiescent run whose next wake-up is at most this far away is kept live
    (parked, reported with :class:`RunParked`) instead of unwound. 0: always unwind."""
    local_timers: bool = False
    """The host's clock is the wall clock: the worker waits for a sleep's or back-off's instant
    by itself instead of asking with :class:`StepWake` (the step that follows tells the host)."""
    log_room: int | None = None
    """Bytes the instance's logs may still take (None: the limit, ``limits``')."""
    terminating: bool = False
    """The instance is being terminated with ``rollback``: the first step it had not finished
    raises the termination error instead of running (see :mod:`...core.rollback`)."""


class Reply(BaseMessage):
    """The host's answer to a worker request (:class:`CapCall`, :class:`Fetch`, ``Step*``)."""

    id: int
    value: Any = None
    error: ErrorInfo | None = None


# -- worker -> host ----------------------------------------------------------------------------


class Result(BaseMessage):
    """The answer to :class:`Load` or :class:`Call`: a value, or the error it raised."""

    id: int
    value: Any = None
    error: ErrorInfo | None = None
    logs: list[LogLine] | None = None
    """What the tenant wrote outside any run since the last result (for its ring)."""


class RunResult(BaseMessage):
    """The outcome of a :class:`Run`."""

    id: int
    outcome: RunOutcome
    logs: list[LogLine] | None = None
    """The run's lines not sent yet (for this and every run message: see the module
    docstring)."""


class CapCall(BaseMessage):
    """Call ``method`` of the host capability ``cap`` on behalf of the call ``call``."""

    id: int
    call: int
    cap: int
    method: str
    args: list[Any]
    kwargs: dict[str, Any] = {}


class Fetch(BaseMessage):
    """The tenant's global ``fetch(request)``, performed by the host (or its outbound binding)."""

    id: int
    call: int
    request: Any


class StepComplete(BaseMessage):
    """``StepChannel.complete``."""

    id: int
    call: int
    name: str
    count: int
    value: bytes
    attempt: int = 1
    logs: list[LogLine] | None = None
    rollback: bool = False
    """The step registered a rollback handler (the journal entry's flag)."""
    sensitive: bool = False
    """The step's config says ``sensitive: "output"`` (recorded with its result)."""


class StepFail(BaseMessage):
    """``StepChannel.fail``; the reply is the next attempt's time or None."""

    id: int
    call: int
    name: str
    count: int
    attempt: int
    error: ErrorInfo
    retry_in: float | None
    logs: list[LogLine] | None = None
    rollback: bool = False
    """As :class:`StepComplete`'s."""
    sensitive: bool = False


class StepSleep(BaseMessage):
    """``StepChannel.sleep``; the reply is the wake-up time."""

    id: int
    call: int
    name: str
    count: int
    until: float | None
    seconds: float
    logs: list[LogLine] | None = None


class StepWaitForEvent(BaseMessage):
    """``StepChannel.wait_for_event``; the reply is ``[deadline, event JSON or None]``."""

    id: int
    call: int
    name: str
    count: int
    event_type: str
    timeout: float
    logs: list[LogLine] | None = None


class StepWake(BaseMessage):
    """``StepChannel.wake``; the reply (event JSON or None) comes when the host wakes it."""

    id: int
    call: int
    name: str
    count: int
    timer: float | None = None


class StepAttempt(BaseMessage):
    """``StepChannel.attempt_started``: one-way, no reply. ``timeout``: the attempt's time limit
    in seconds (the host stops a worker still in it well past that: see :mod:`.interrupt`)."""

    call: int
    name: str
    count: int
    attempt: int
    retry_in: float | None
    timeout: float | None = None
    logs: list[LogLine] | None = None
    rollback: bool = False
    """As :class:`StepComplete`'s (a failure recorded for a dead worker keeps it)."""


class RunParked(BaseMessage):
    """One-way: the run ``call`` went quiescent and is kept live (parked) for its near wake-up
    at ``wake_at``. The run's next message (a step, its result) says it went on: a wake-up
    costs no message of its own."""

    call: int
    wake_at: float


# -- host <-> zygote (the fork server's control socket) ------------------------------------------


class ZygoteReady(BaseMessage):
    """The fork server has imported the runtime and prepared confinement."""

    version: int
    pid: int
    summary: str
    safe: bool
    error: str | None = None
    """Set when the fork server refuses to serve (for example, fail-closed confinement)."""


class Spawn(BaseMessage):
    """Fork a worker; the worker's end of its socketpair rides along (SCM_RIGHTS)."""

    id: int


class Spawned(BaseMessage):
    """The worker ``pid`` was forked; a pidfd for it rides along (SCM_RIGHTS)."""

    id: int
    pid: int
    error: str | None = None


class Exited(BaseMessage):
    """The worker ``pid`` was reaped: ``status`` is its exit code, or minus the signal."""

    pid: int
    status: int


class Retire(BaseMessage):
    """Fork no more; exit once every worker forked so far has exited."""


ControlMessage = ZygoteReady | Spawn | Spawned | Exited | Retire


Message = (
    Hello
    | Ping
    | Pong
    | Shutdown
    | Cancel
    | Pause
    | Load
    | Call
    | Run
    | Reply
    | Result
    | RunResult
    | CapCall
    | Fetch
    | StepComplete
    | StepFail
    | StepSleep
    | StepWaitForEvent
    | StepWake
    | StepAttempt
    | RunParked
)


class CapRef:
    """A reference to an object living on the host. ``attrs`` are its simple attributes
    (strings, numbers, booleans, None), snapshotted so the proxy can answer them at once.

    A plain class, not a Struct, so that msgspec hands it to the extension hook wherever it
    sits inside a value."""

    __slots__ = ("attrs", "id")

    def __init__(self, id: int, attrs: dict[str, Any] | None = None) -> None:
        self.id = id
        self.attrs = attrs or {}

    def __repr__(self) -> str:
        return f"CapRef({self.id}, {self.attrs!r})"


_control_encoder = msgspec.msgpack.Encoder()
_control_decoder: msgspec.msgpack.Decoder[ControlMessage] = msgspec.msgpack.Decoder(ControlMessage)


def encode_control(message: BaseMessage) -> bytes:
    """The bytes of a message on the fork server's control socket."""
    return _control_encoder.encode(message)


def decode_control(data: bytes) -> ControlMessage:
    """A message from the fork server's control socket; ProtocolError if malformed."""
    try:
        return _control_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"malformed control message: {exc}") from None


def check_hello(frame: bytes) -> Hello:
    """Decode the first frame of a worker; a version mismatch raises ProtocolVersionError
    before the rest of the message is interpreted (its layout may differ)."""
    try:
        raw = msgspec.msgpack.decode(frame)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed handshake from worker: {exc}") from None
    if not (isinstance(raw, list) and len(raw) >= 2 and raw[0] == "Hello"):
        raise ProtocolError(f"expected a Hello handshake from the worker, got {raw!r:.200}")
    if raw[1] != PROTOCOL_VERSION:
        raise ProtocolVersionError(PROTOCOL_VERSION, raw[1])
    try:
        return msgspec.msgpack.decode(frame, type=Hello)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed Hello: {exc}") from None


_packer = msgspec.msgpack.Encoder()


class Codec:
    """Encodes and decodes messages for one connection.

    ``export`` turns an object that is not plain data into a :class:`CapRef` (the host
    registers a capability; the worker only re-exports the proxies it was given) and raises
    TypeError for what cannot cross. ``resolve`` turns a received :class:`CapRef` back into an
    object (the host finds the capability; the worker builds a proxy).
    """

    def __init__(
        self,
        *,
        export: Callable[[object], CapRef] | None = None,
        resolve: Callable[[CapRef], object] | None = None,
        response_type: type[Response] = Response,
    ) -> None:
        self._export = export
        self._resolve = resolve
        self._response_type = response_type
        self._encoder = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(
            Message, ext_hook=self._ext_hook
        )

    def encode(self, message: BaseMessage) -> bytes:
        """The bytes of ``message``; TypeError names a value that cannot cross (a
        SerializationError for values msgpack cannot hold: an integer past 64 bits, a string
        with a lone surrogate, both of which ``json.loads`` makes from a client's body)."""
        try:
            return self._encoder.encode(message)
        except (OverflowError, UnicodeEncodeError) as exc:
            raise SerializationError(f"a value cannot cross the worker boundary: {exc}") from None

    def decode(self, frame: bytes) -> Message:
        """The message in ``frame``; ProtocolError if it is not one."""
        try:
            return self._decoder.decode(frame)
        except ProtocolError:
            raise
        except Exception as exc:
            # Not only msgspec's errors: a Request or Response extension of the wrong shape
            # fails in _ext_hook with whatever unpacking it raised (ValueError, TypeError), and
            # a peer that sent it must be treated as one that sent garbage (the host kills it).
            raise ProtocolError(f"malformed message: {exc}") from None

    def _enc_hook(self, obj: object) -> Any:
        if isinstance(obj, Request):
            body = obj.body_bytes()
            return msgspec.msgpack.Ext(
                EXT_REQUEST, _packer.encode([obj.method, obj.url, obj.headers.items(), body])
            )
        if isinstance(obj, Response):
            return msgspec.msgpack.Ext(
                EXT_RESPONSE,
                _packer.encode(
                    [obj.status, obj.status_text, obj.headers.items(), obj.body_bytes()]
                ),
            )
        if isinstance(obj, Headers):
            return obj.items()
        if not isinstance(obj, CapRef):
            if self._export is None:
                raise TypeError(_cannot_cross(obj))
            obj = self._export(obj)
        return msgspec.msgpack.Ext(EXT_CAPABILITY, _packer.encode([obj.id, obj.attrs]))

    def _ext_hook(self, code: int, data: memoryview) -> Any:
        if code == EXT_REQUEST:
            method, url, headers, body = msgspec.msgpack.decode(data)
            return Request(url, method=method, headers=headers, body=body)
        if code == EXT_RESPONSE:
            status, status_text, headers, body = msgspec.msgpack.decode(data)
            return self._response_type(body, status, headers, status_text=status_text)
        if code == EXT_CAPABILITY:
            cap_id, attrs = msgspec.msgpack.decode(data, type=tuple[int, dict[str, Any]])
            if self._resolve is None:
                raise ProtocolError("unexpected capability reference")
            return self._resolve(CapRef(cap_id, attrs))
        raise ProtocolError(f"unknown msgpack extension type {code}")


def _cannot_cross(obj: object) -> str:
    return (
        f"a {type(obj).__name__} cannot be sent across the worker boundary (only JSON-like "
        "values, bytes, datetimes, Request, Response and bindings can)"
    )
