"""What a run's code writes (``print``, ``sys.stdout``/``sys.stderr``, ``logging``): lines, the
step attempt each belongs to, and the bounds that keep a tenant printing in a loop from filling
the disk or slowing the engine.

A :class:`LogLine` is one line (a ``logging`` record is one line, newlines and all), with its
time, its stream (``stdout``, ``stderr``, a logging level such as ``INFO``, or ``dwf`` for a
note of ours) and the step attempt that wrote it (none: ``run()``'s own code between steps).

:data:`current_step` says which attempt the code running now belongs to: the step sets it
around each attempt (:mod:`.step`), in the attempt's own task, so concurrent branches of a run
(``asyncio.gather`` of steps) each see their own.

A :class:`LogBook` holds the lines of one run (one wake-up of an instance) until they are
shipped and stored, bounded twice (:class:`~.limits.Limits`): each *scope* (one step attempt,
or the run's own code) may write ``log_bytes_per_attempt``, and the run all together what the
instance has left of ``log_bytes_per_instance``. What does not fit is dropped and counted, and
:meth:`LogBook.take` reports it as a note (stream ``dwf``, ``dropped`` = how many lines). The
same class bounds both sides of the sandbox: the worker, so that it sends no more than may be
kept, and the host, which decides what is stored (a worker's notes are counts in transit: the
host counts them in and writes its own). Sizes are UTF-8 bytes plus :data:`LINE_OVERHEAD` per
line, so that a flood of empty lines is not free.

Nothing here does I/O.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import NamedTuple

import msgspec

__all__ = [
    "DWF_STREAM",
    "FULL_INSTANCE",
    "FULL_SCOPE",
    "LINE_OVERHEAD",
    "MAX_LINE_CHARS",
    "LogBook",
    "LogLine",
    "LogTake",
    "StepKey",
    "clip",
    "current_step",
    "line_size",
]

StepKey = tuple[str, int, int]
"""``(step name, occurrence count, attempt)``: the step attempt a line belongs to."""

current_step: contextvars.ContextVar[StepKey | None] = contextvars.ContextVar(
    "dwf_current_step", default=None
)
"""The step attempt the running code belongs to (None: ``run()``'s own code, or no run)."""

DWF_STREAM = "dwf"
"""The stream of our own notes in a run's log (lines dropped)."""

FULL_SCOPE = "scope"
FULL_INSTANCE = "instance"
"""The text of a relayed note (see :class:`LogBook`): why its lines were dropped."""

LINE_OVERHEAD = 16
"""Bytes each line counts for on top of its text (its row, its time, its stream)."""

MAX_LINE_CHARS = 8192
"""Characters of one line kept; the rest is cut, and the line says how much."""


class LogLine(msgspec.Struct, frozen=True, array_like=True, gc=False, omit_defaults=True):
    """One line a run's code wrote."""

    at: float
    """When (epoch seconds)."""
    stream: str
    """``stdout``, ``stderr``, a logging level name (``INFO``...), or ``dwf`` (our note)."""
    text: str
    """The line without its newline (a logging record: its message, a traceback included)."""
    step: str | None = None
    """The step it belongs to (None: the run's own code, between steps)."""
    count: int = 0
    """The step's occurrence (1 for its first)."""
    attempt: int = 0
    """The attempt of the step (1 for its first)."""
    dropped: int = 0
    """A note (stream ``dwf``): how many lines were dropped here."""

    @property
    def key(self) -> StepKey | None:
        """The step attempt it belongs to, None for the run's own code."""
        return None if self.step is None else (self.step, self.count, self.attempt)


def line_size(text: str) -> int:
    """What a line of ``text`` counts for against the bounds: its UTF-8 bytes plus
    :data:`LINE_OVERHEAD`."""
    return (len(text) if text.isascii() else len(text.encode(errors="replace"))) + LINE_OVERHEAD


def clip(text: str) -> str:
    """``text`` cut to :data:`MAX_LINE_CHARS`, saying how much was cut."""
    if len(text) <= MAX_LINE_CHARS:
        return text
    return f"{text[:MAX_LINE_CHARS]}… [{len(text) - MAX_LINE_CHARS:,} more characters]"


class _Scope:
    __slots__ = ("dropped", "over_instance", "used")

    def __init__(self) -> None:
        self.used = 0
        self.dropped = 0
        """Lines dropped and not reported yet."""
        self.over_instance = False
        """Some of them were dropped because the instance's room ran out."""


class LogTake(NamedTuple):
    """What :meth:`LogBook.take` hands over: the lines, what they add to the instance's stored
    bytes, and how many lines were dropped since the last take."""

    lines: list[LogLine]
    bytes: int
    dropped: int


class LogBook:
    """The lines of one run until they are shipped (worker) or stored (host): see the module
    docstring. ``per_scope``: bytes each step attempt (and the run's own code) may write;
    ``room``: bytes the instance may still store; ``per_instance``: its limit (for notes)."""

    __slots__ = (
        "_bytes",
        "_dropped",
        "_drops",
        "_noted",
        "_scopes",
        "dirty",
        "pending",
        "per_instance",
        "per_scope",
        "relay",
        "room",
    )

    def __init__(
        self, per_scope: int, room: int, per_instance: int, *, relay: bool = False
    ) -> None:
        self.per_scope = per_scope
        self.relay = relay
        """The book of a run's *source* (a worker, the in-process capture), whose notes are
        counts for the host's book (text :data:`FULL_INSTANCE` or :data:`FULL_SCOPE`), every
        drop reported: the host's book decides what is stored and says it."""
        self.per_instance = per_instance
        self.room = max(0, room)
        self._noted = room <= 0  # the instance's limit was reached before this run: noted then
        self._scopes: dict[StepKey | None, _Scope] = {}
        self.pending: list[LogLine] = []
        self._bytes = 0
        self._dropped = 0
        self._drops = False
        """Some scope counted drops since the last take (its note is due)."""
        self.dirty = False
        """Something to take: lines, or drops to report."""

    def _scope(self, key: StepKey | None) -> _Scope:
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope()
        return scope

    def add(self, line: LogLine) -> bool:
        """Keep ``line`` if it fits (True), else count it as dropped. A note (``dropped`` set:
        a worker's count in transit) counts that many lines as dropped here."""
        # (line.key and _scope inlined: this runs for every line, on both sides of the sandbox)
        key = None if line.step is None else (line.step, line.count, line.attempt)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope()
        self.dirty = True
        if line.dropped:
            if line.text == FULL_INSTANCE:
                self.room = 0  # the source ran out of the instance's room: so do we
            self._drop(scope, line.dropped)
            return False
        size = line_size(line.text)
        if scope.used + size > self.per_scope:
            scope.used = self.per_scope  # full: the first lines are kept, in one piece
            self._drop(scope, 1)
            return False
        if size > self.room:
            self.room = 0
            self._drop(scope, 1)
            return False
        scope.used += size
        self.room -= size
        self._bytes += size
        self.pending.append(line)
        return True

    def add_all(self, lines: Iterable[LogLine]) -> None:
        """:meth:`add` each of ``lines``."""
        for line in lines:
            self.add(line)

    def full(self, key: StepKey | None) -> bool:
        """Whether no line of ``key`` can be kept any more (its scope or the instance is
        full): the capture then only counts (:meth:`drop`)."""
        if self.room <= 0:
            return True
        scope = self._scopes.get(key)
        return scope is not None and scope.used >= self.per_scope

    def drop(self, key: StepKey | None, lines: int) -> None:
        """Count ``lines`` lines of ``key`` as dropped."""
        self.dirty = True
        self._drop(self._scope(key), lines)

    def _drop(self, scope: _Scope, lines: int) -> None:
        scope.dropped += lines
        self._dropped += lines
        self._drops = True
        if self.room <= 0:
            scope.over_instance = True

    def take(self, now: float) -> LogTake:
        """The lines kept since the last take, in order, then a note per scope that dropped
        lines (``dwf``, ``dropped`` = how many). Past the instance's limit one note says so,
        once; later drops are only counted (:attr:`LogTake.dropped`)."""
        lines = self.pending
        self.pending = []
        size = self._bytes
        # No scope has a drop to report unless _drop ran since the last take: a run's scopes
        # are not all walked at each of its steps.
        for key, scope in self._scopes.items() if self._drops else ():
            if not scope.dropped:
                continue
            step, count, attempt = key if key is not None else (None, 0, 0)
            if self.relay:
                reason = FULL_INSTANCE if scope.over_instance else FULL_SCOPE
                lines.append(LogLine(now, DWF_STREAM, reason, step, count, attempt, scope.dropped))
                scope.dropped = 0
                scope.over_instance = False
                continue
            if not scope.over_instance:
                why = f"over the limit of {_size(self.per_scope)} for " + (
                    "one step attempt" if key is not None else "run()'s own code in one run"
                )
            elif not self._noted:
                self._noted = True
                why = (
                    f"the instance's logs reached their limit of {_size(self.per_instance)}; "
                    "later lines are dropped, and counted"
                )
            else:
                why = ""
            if why:
                text = f"{scope.dropped:,} line(s) dropped: {why}"
                lines.append(LogLine(now, DWF_STREAM, text, step, count, attempt, scope.dropped))
                size += line_size(text)
            scope.dropped = 0
            scope.over_instance = False
        taken = LogTake(lines, size, self._dropped)
        self._bytes = 0
        self._dropped = 0
        self._drops = False
        self.dirty = False
        return taken


def _size(n: int) -> str:
    return (
        f"{n >> 20} MiB"
        if n % (1 << 20) == 0
        else f"{n >> 10} KiB"
        if n % 1024 == 0
        else f"{n:,} bytes"
    )
