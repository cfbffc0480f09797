"""What tenant code prints or logs, caught as it is written and routed to where it belongs.

``sys.stdout`` and ``sys.stderr`` become :class:`CapturedStream` objects and the root logger
gets a :class:`CaptureHandler`; both hand what is written to the *sink* of the code writing it,
found in the context variable :data:`current_sink` (so concurrent runs in one process never
mix: each run's task, and every task it starts, sees its own). The step attempt a line belongs
to is :data:`~dynamic_workflows.core.logs.current_step`, which the step sets.

The sinks:

* :class:`RunSink`: one run (one wake-up of an instance), bounded by a
  :class:`~dynamic_workflows.core.logs.LogBook`. In a worker process its lines wait for the next
  message the run sends the host anyway (a step's result, an attempt's notice, the run's
  outcome: :meth:`RunSink.take`); in the host (``--trusted``) they go to the run's step channel
  as they are written (``forward``). Lines ``run()`` prints while it replays steps recorded
  before are dropped: an earlier run printed them, and the log keeps them once.
* :class:`BatchSink`: a worker process's output outside any run (importing the tenant's
  modules, ``fetch``, RPC), bounded per batch, sent with the call's result.
* :class:`RingSink`: the same in the host (``--trusted``), into the tenant's ring
  (:class:`~.tenant_logs.TenantLog`).

In a worker process everything the tenant writes is captured (its descriptors 1 and 2 are
``/dev/null``), and ``print`` is :func:`captured_print`: the built-in's text in one write, not
one per argument and separator (most of what a printed line cost). In the host, code that
runs with no sink (the host's own, the dispatcher) writes to the real streams as before, and
the host's log handlers leave the tenant's records out (:class:`HostOnly`): they are the
tenant's log, not the server's.
"""

from __future__ import annotations

import builtins
import contextvars
import io
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..core.logs import LogBook, LogLine, StepKey, clip, current_step
from ..core.tracebacks import format_traceback
from .tenant_logs import TenantLog

__all__ = [
    "BatchSink",
    "CaptureHandler",
    "CapturedStream",
    "HostOnly",
    "RingSink",
    "RunSink",
    "Sink",
    "captured_print",
    "current_sink",
    "install_in_process",
    "install_in_worker",
]

current_sink: contextvars.ContextVar[Sink | None] = contextvars.ContextVar(
    "dwf_log_sink", default=None
)
"""Where the running tenant code's output goes (None: it is not tenant code)."""

_PARTIAL_MAX = 8192
"""Characters of a line without its newline kept waiting for the rest; longer, it is a line."""


class Sink:
    """Lines assembled from writes (``print`` writes a line's text and its newline apart), and
    logging records; subclasses keep them (:meth:`add`) and bound them (:meth:`full`)."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial: dict[str, str] = {}

    # -- what subclasses do ------------------------------------------------------------------

    def add(self, line: LogLine) -> None:
        """Keep ``line``."""
        raise NotImplementedError

    def full(self, key: StepKey | None) -> bool:
        """Whether lines of ``key`` are only counted now (their scope is full)."""
        return False

    def drop(self, key: StepKey | None, lines: int) -> None:
        """Count ``lines`` lines of ``key`` as dropped."""

    def skip(self, key: StepKey | None) -> bool:
        """Whether lines of ``key`` are not kept at all (not even counted)."""
        return False

    # -- input ---------------------------------------------------------------------------------

    def write(self, stream: str, text: str) -> None:
        """Text written to ``sys.stdout`` or ``sys.stderr`` (``stream``)."""
        key = current_step.get()
        if "\n" not in text:
            self.piece(stream, text, key)
            return
        if self.full(key):
            # The cheap path of a tenant printing in a loop: count, keep nothing.
            lines = text.count("\n")
            if lines:
                self._partial.pop(stream, None)
                self.drop(key, lines)
            return
        partial = self._partial.pop(stream, None)
        if partial is not None:
            text = partial + text
        start = 0
        while True:
            end = text.find("\n", start)
            if end < 0:
                break
            self._line(stream, text[start:end], key)
            start = end + 1
            if self.full(key):
                lines = text.count("\n", start)
                if lines:
                    self.drop(key, lines)
                start = text.rfind("\n") + 1
                break
        if start < len(text):
            rest = text[start:] if start else text
            if len(rest) > _PARTIAL_MAX:
                self._line(stream, rest, key)
            else:
                self._partial[stream] = rest

    def piece(self, stream: str, text: str, key: StepKey | None) -> None:
        """A write with no newline in it, of ``key``'s code: a piece of a line, kept waiting
        for the rest (:meth:`write`'s loop does the same, with more set-up). ``print(a, b)``
        writes ``a``, the separator, ``b`` and the newline apart: most writes are pieces."""
        if self.full(key):
            return  # (as write: a full scope's text is only counted, by its newlines)
        partial = self._partial.get(stream)
        if partial is not None:
            text = partial + text
        if len(text) <= _PARTIAL_MAX:
            self._partial[stream] = text
            return
        if partial is not None:
            del self._partial[stream]
        self._line(stream, text, key)

    def record(self, stream: str, text: str, at: float) -> None:
        """A logging record (one line, whatever newlines it holds)."""
        key = current_step.get()
        if self.skip(key):
            return
        if self.full(key):
            self.drop(key, 1)
        else:
            self.add(_line(at, stream, text, key))

    def flush_partial(self) -> None:
        """Lines written without their newline yet, as lines (their scope is over)."""
        if self._partial:
            key = current_step.get()
            partial, self._partial = self._partial, {}
            for stream, text in partial.items():
                if not self.full(key):
                    self._line(stream, text, key)

    def _line(self, stream: str, text: str, key: StepKey | None) -> None:
        if not self.skip(key):
            self.add(_line(time.time(), stream, text, key))


def _line(at: float, stream: str, text: str, key: StepKey | None) -> LogLine:
    if key is None:
        return LogLine(at, stream, clip(text))
    return LogLine(at, stream, clip(text), key[0], key[1], key[2])


class RunSink(Sink):
    """One run's lines, bounded by ``book``; see the module docstring. ``replaying()``: whether
    the run still replays recorded steps (its own lines are then not kept); ``forward``: where
    kept lines go at once (else they wait for :meth:`take`)."""

    __slots__ = ("book", "forward", "replaying")

    def __init__(
        self,
        book: LogBook,
        *,
        replaying: Callable[[], bool] | None = None,
        forward: Callable[[list[LogLine]], None] | None = None,
    ) -> None:
        super().__init__()
        self.book = book
        self.replaying = replaying
        self.forward = forward

    def add(self, line: LogLine) -> None:
        if self.book.add(line) and self.forward is not None:
            self.book.pending.clear()
            self.forward([line])

    def full(self, key: StepKey | None) -> bool:
        return self.book.full(key)

    def drop(self, key: StepKey | None, lines: int) -> None:
        self.book.drop(key, lines)

    def skip(self, key: StepKey | None) -> bool:
        return key is None and self.replaying is not None and self.replaying()

    def take(self) -> list[LogLine] | None:
        """What was kept since the last take, and the drops to report; None if nothing (the
        hot path of a run that prints nothing: two attribute reads)."""
        if not (self.book.dirty or self._partial):
            return None
        self.flush_partial()
        lines = self.book.take(time.time()).lines
        return lines or None

    def close(self) -> None:
        """The run is over: forward what is left (partial lines, drop counts)."""
        lines = self.take()
        if lines and self.forward is not None:
            self.forward(lines)


class BatchSink(Sink):
    """A worker's output outside any run, sent with the next call's result: at most
    ``per_batch`` bytes per batch, the rest counted."""

    __slots__ = ("_book", "per_batch")

    def __init__(self, per_batch: int) -> None:
        super().__init__()
        self.per_batch = per_batch
        self._book = LogBook(per_batch, per_batch, per_batch)

    def add(self, line: LogLine) -> None:
        self._book.add(line)

    def full(self, key: StepKey | None) -> bool:
        return self._book.full(key)

    def drop(self, key: StepKey | None, lines: int) -> None:
        self._book.drop(key, lines)

    def take(self) -> list[LogLine] | None:
        """The batch so far (None if empty); the next one starts empty."""
        if not (self._book.dirty or self._partial):
            return None
        self.flush_partial()
        book, self._book = self._book, LogBook(self.per_batch, self.per_batch, self.per_batch)
        return book.take(time.time()).lines or None


class RingSink(Sink):
    """Into a tenant's ring on the host (which keeps the latest lines)."""

    __slots__ = ("ring",)

    def __init__(self, ring: TenantLog) -> None:
        super().__init__()
        self.ring = ring

    def add(self, line: LogLine) -> None:
        self.ring.add([line])


# -- the streams and the handler ----------------------------------------------------------------


class CapturedStream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr``: writes go to the current sink, else to ``default``
    (a worker's :class:`BatchSink`), else to ``original`` (the host's own stream)."""

    def __init__(self, name: str, default: Sink | None, original: TextIO | None) -> None:
        super().__init__()
        self.name = name
        self._default = default
        self._original = original

    @property
    def encoding(self) -> str:  # type: ignore[override]  # (io's is a read-only descriptor)
        return "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return "backslashreplace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        sink = current_sink.get() or self._default
        if sink is not None:
            if "\n" in text:
                sink.write(self.name, text)
            else:  # (one call less for most of print's writes)
                sink.piece(self.name, text, current_step.get())
        elif self._original is not None:
            self._original.write(text)
        return len(text)

    def flush(self) -> None:
        if current_sink.get() is None and self._default is None and self._original is not None:
            self._original.flush()

    def fileno(self) -> int:
        if current_sink.get() is None and self._default is None and self._original is not None:
            return self._original.fileno()
        raise io.UnsupportedOperation("captured output has no file descriptor")

    @property
    def buffer(self) -> _Bytes:
        """``sys.stdout.buffer``: bytes written are decoded (UTF-8, errors replaced)."""
        return _Bytes(self)


class _Bytes:
    __slots__ = ("_text",)

    def __init__(self, text: CapturedStream) -> None:
        self._text = text

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._text.write(bytes(data).decode("utf-8", errors="replace"))
        return len(data)

    def flush(self) -> None:
        self._text.flush()


class CaptureHandler(logging.Handler):
    """The root logger's handler for tenant code's records: each goes to the current sink
    (else to ``default``) as one line, its stream the level's name. Records of the loggers
    named ``ours`` (and their children) are not the tenant's."""

    def __init__(self, default: Sink | None, ours: tuple[str, ...]) -> None:
        super().__init__(logging.NOTSET)
        self._default = default
        self._ours = ours
        self._ours_dotted = tuple(name + "." for name in ours)

    def is_ours(self, name: str) -> bool:
        return name in self._ours or name.startswith(self._ours_dotted)

    def emit(self, record: logging.LogRecord) -> None:
        sink = current_sink.get() or self._default
        if sink is None or self.is_ours(record.name):
            return
        try:
            text = record.getMessage()
        except Exception as exc:  # a format string that does not fit its arguments
            text = f"{record.msg!r} (cannot be formatted: {exc})"
        if record.exc_info and record.exc_info[1] is not None:
            tb = format_traceback(record.exc_info[1])
            if tb:
                text = f"{text}\n{tb}"
        if record.name != "root":
            text = f"{record.name}: {text}"
        sink.record(record.levelname, text, record.created)

    def handleError(self, record: logging.LogRecord) -> None:
        # Not to sys.stderr: that is captured too.
        return None


class HostOnly(logging.Filter):
    """On the host's own log handlers (``--trusted``): leaves out the records tenant code
    writes (they go to its run's log, through :class:`CaptureHandler`)."""

    def __init__(self, handler: CaptureHandler) -> None:
        super().__init__()
        self._handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        return current_sink.get() is None or self._handler.is_ours(record.name)


_HOST_LOGGERS = ("dynamic_workflows", "uvicorn", "asyncio")
_host_handler = CaptureHandler(None, _HOST_LOGGERS)
"""The host's one capture handler (``--trusted``): the streams and the root logger are the
process's, whatever the number of loaders."""


_builtin_print = builtins.print

_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Types whose ``str()`` runs none of the tenant's code (see :func:`captured_print`)."""


def captured_print(
    *args: object,
    sep: str | None = " ",
    end: str | None = "\n",
    file: Any = None,
    flush: bool = False,
) -> None:
    """``print`` in a worker process: the same text, in one write to a captured stream.

    The built-in writes each argument, each separator and the end apart: ``print("step", x)``
    is four trips through :class:`CapturedStream` and the sink, and a printed line cost a
    worker about four times what the line itself did. This one joins them first when nothing
    can tell the difference: the stream is ours and every argument is a ``str``, ``int``,
    ``float``, ``bool`` or ``None`` (their ``str()`` runs no tenant code, so nothing else can
    be written between the pieces). Anything else, or a ``str()`` that raises (an ``int`` past
    the digits limit: the built-in writes the pieces before it), is the built-in's."""
    target = sys.stdout if file is None else file
    if (
        type(target) is CapturedStream
        and (sep is None or type(sep) is str)
        and (end is None or type(end) is str)
    ):
        for arg in args:
            if type(arg) not in _PLAIN:
                break
        else:
            try:
                text = (" " if sep is None else sep).join(map(str, args))
            except ValueError:
                pass
            else:
                target.write(text + ("\n" if end is None else end))
                if flush:
                    target.flush()
                return
    _builtin_print(*args, sep=sep, end=end, file=file, flush=flush)


captured_print.__name__ = captured_print.__qualname__ = "print"


def install_in_worker(default: Sink) -> None:
    """In a worker process: everything the tenant writes is captured (``default``: what is
    written outside any run), and its ``logging`` records from INFO up; ``print`` is
    :func:`captured_print`."""
    sys.stdout = CapturedStream("stdout", default, None)
    sys.stderr = CapturedStream("stderr", default, None)
    builtins.print = captured_print
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(CaptureHandler(default, ("dynamic_workflows",)))
    root.setLevel(logging.INFO)


def install_in_process() -> None:
    """In the host (``--trusted``): tenant code's output goes to its sink, everything else
    where it went. Cheap when done already; done again when something replaced the streams
    since (a test harness's capture) or added a handler (it gets :class:`HostOnly`)."""
    if not isinstance(sys.stdout, CapturedStream):
        sys.stdout = CapturedStream("stdout", None, sys.stdout)
    if not isinstance(sys.stderr, CapturedStream):
        sys.stderr = CapturedStream("stderr", None, sys.stderr)
    root = logging.getLogger()
    if _host_handler not in root.handlers:
        root.addHandler(_host_handler)
    for handler in root.handlers:
        if handler is not _host_handler and not any(
            isinstance(f, HostOnly) for f in handler.filters
        ):
            handler.addFilter(HostOnly(_host_handler))
