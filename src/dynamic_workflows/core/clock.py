"""Time, injectable: the engine never calls ``time.time()`` or ``asyncio.sleep`` directly.

:class:`SystemClock` is wall-clock time. :class:`MockClock` is virtual time for tests: with
``autojump=True`` it jumps straight to the next timer whenever the program has been idle for
``autojump_threshold`` real seconds, so a workflow that sleeps for days runs in milliseconds.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

__all__ = ["Clock", "MockClock", "SystemClock", "Timeout", "TimerHandle"]


class TimerHandle(Protocol):
    """Something that can be cancelled (``asyncio.TimerHandle`` fits)."""

    def cancel(self) -> None: ...


class Timeout(Protocol):
    """A deadline on the current task, as ``asyncio.timeout``: an async context manager, and
    also ``start()`` / ``finish(cancelled)`` for a hot path that cannot afford the two
    coroutines of ``async with`` (``finish`` raises ``TimeoutError`` if the deadline cancelled
    the block)."""

    def start(self) -> None: ...

    def finish(self, cancelled: bool) -> None: ...

    async def __aenter__(self) -> Timeout: ...

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> bool: ...


class Clock(Protocol):
    """The engine's source of time. Times are seconds since the Unix epoch (floats)."""

    wall: bool
    """Whether this is the system's wall clock, which another process (a sandboxed worker)
    reads for itself; a virtual clock's instants exist only in this process."""

    def now(self) -> float:
        """The current time."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return at ``deadline`` (at once if it has passed)."""
        ...

    def call_at(self, deadline: float, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback`` on the running loop at ``deadline``."""
        ...

    def timeout_at(self, deadline: float) -> Timeout:
        """A :class:`Timeout` raising ``TimeoutError`` if its block runs past ``deadline``."""
        ...


class SystemClock:
    """Wall-clock time on the running asyncio loop.

    Its timeouts share one loop timer (:class:`_Deadlines`): a step's timeout is armed and
    disarmed on every attempt that suspends, and an ``asyncio.timeout`` each time (a timer
    handle pushed on the loop's heap, and left there cancelled) was a third of a short step's
    cost. Its timers (:meth:`call_at`, :meth:`sleep_until`) share one loop timer per
    millisecond they are due in (:class:`_Alarms`), and never fire early."""

    wall = True

    def __init__(self) -> None:
        self._deadlines: _Deadlines | None = None
        self._alarms: _Alarms | None = None

    now = staticmethod(time.time)
    """The current time: ``time.time`` itself, with no method of ours around it (every step
    attempt reads it twice, for its history)."""

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= time.time():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        alarm = self.call_at(deadline, functools.partial(_set_none, fut))
        try:
            await fut
        finally:
            alarm.cancel()

    def call_at(self, deadline: float, callback: Callable[[], None]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        alarms = self._alarms
        if alarms is None or alarms.loop is not loop:
            alarms = self._alarms = _Alarms(loop)
        return alarms.add(deadline, callback)

    def timeout_at(self, deadline: float) -> _SharedTimeout:
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = _Deadlines(loop)
        return _SharedTimeout(deadlines, loop.time() + (deadline - time.time()))


class _TimeoutBlock(abc.ABC):
    """``async with`` over a timeout's ``start()`` / ``finish(cancelled)``."""

    __slots__ = ()

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def finish(self, cancelled: bool) -> None: ...

    async def __aenter__(self) -> _TimeoutBlock:
        self.start()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> bool:
        self.finish(exc_type is asyncio.CancelledError)
        return False


class _SharedTimeout(_TimeoutBlock):
    """``asyncio.timeout``'s behaviour, on the timer shared by every timeout of one loop."""

    __slots__ = ("_deadlines", "_fired", "_task", "_when", "done")

    def __init__(self, deadlines: _Deadlines, when: float) -> None:
        self._deadlines = deadlines
        self._when = when
        self._task: asyncio.Task[object] | None = None
        self._fired = False
        self.done = False

    def start(self) -> None:
        self._task = asyncio.current_task()
        if self._task is None:
            raise RuntimeError("a timeout must be used inside a task")
        self._deadlines.add(self._when, self)

    def fire(self) -> None:
        if not self.done and self._task is not None and not self._task.done():
            self._fired = True
            self._task.cancel()

    def finish(self, cancelled: bool) -> None:
        self.done = True
        self._deadlines.finished()
        assert self._task is not None
        if self._fired and cancelled and self._task.uncancel() == 0:
            raise TimeoutError


class _Deadlines:
    """The pending timeouts of one loop, earliest first, behind one loop timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[tuple[float, int, _SharedTimeout]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")
        self._finished = 0

    def add(self, when: float, timeout: _SharedTimeout) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), timeout))
        if when < self._armed_for:
            self._arm(when)

    def finished(self) -> None:
        # Finished timeouts stay in the heap until their time; purge them once they are most of
        # it, so that a steady stream of quick steps with long timeouts holds no memory.
        self._finished += 1
        if self._finished > 256 and self._finished * 2 > len(self._heap):
            self._heap = [item for item in self._heap if not item[2].done]
            heapq.heapify(self._heap)
            self._finished = 0

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = when
        self._timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_for = float("inf")
        now = self.loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timeout = heapq.heappop(heap)
            if timeout.done:
                self._finished = max(0, self._finished - 1)
            else:
                timeout.fire()
        if heap:
            self._arm(heap[0][0])


def _set_none(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Alarm:
    """One timer of :class:`_Alarms`; ``cancel()`` as ``asyncio.TimerHandle``'s."""

    __slots__ = ("_bucket", "callback")

    def __init__(self, bucket: _Bucket, callback: Callable[[], None]) -> None:
        self._bucket = bucket
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self._bucket.cancelled_one()


class _Bucket:
    """The timers of one loop due in the same millisecond, behind one loop timer."""

    __slots__ = ("alarms", "handle", "key", "live", "owner")

    def __init__(self, owner: _Alarms, key: int) -> None:
        self.owner = owner
        self.key = key
        self.alarms: list[_Alarm] = []
        self.live = 0
        self.handle: asyncio.TimerHandle | None = None

    def cancelled_one(self) -> None:
        self.live -= 1
        if self.live == 0:
            # Nothing left to wake: no loop timer, and no memory, until a far-off instant.
            self.owner.drop(self)


class _Alarms:
    """The wall-clock timers of one loop, one loop timer per millisecond they are due in.

    Ten thousand sleepers due at the same instant are woken by one callback, in one loop
    iteration, so every one of them has run its next step before the first one's write is
    made; with a loop timer each, the loop took them a few at a time over tens of
    milliseconds, between the writes of those woken before. A bucket fires once the wall clock
    has reached its millisecond: a loop's timer may fire early (uvloop rounds its delays to the
    nearest millisecond from the time its iteration began; the loop's monotonic clock and the
    wall clock drift apart), and a sleep must never end before its instant."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._buckets: dict[int, _Bucket] = {}

    def add(self, deadline: float, callback: Callable[[], None]) -> _Alarm:
        key = math.ceil(deadline * 1000)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self, key)
            self._arm(bucket)
        alarm = _Alarm(bucket, callback)
        bucket.alarms.append(alarm)
        bucket.live += 1
        return alarm

    def drop(self, bucket: _Bucket) -> None:
        if self._buckets.get(bucket.key) is bucket:
            del self._buckets[bucket.key]
        if bucket.handle is not None:
            bucket.handle.cancel()
            bucket.handle = None

    def _arm(self, bucket: _Bucket) -> None:
        delay = bucket.key / 1000 - time.time()
        bucket.handle = self.loop.call_later(max(0.0, delay), self._fire, bucket)

    def _fire(self, bucket: _Bucket) -> None:
        bucket.handle = None
        if time.time() * 1000 < bucket.key:
            self._arm(bucket)  # early: wait for the rest
            return
        self.drop(bucket)
        for alarm in bucket.alarms:
            callback = alarm.callback
            if callback is not None:
                alarm.callback = None
                try:
                    callback()
                except Exception as exc:  # one timer's failure must not stop the others
                    self.loop.call_exception_handler(
                        {"message": "Exception in a timer callback", "exception": exc}
                    )


class _MockTimer:
    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _MockTimeout(_TimeoutBlock):
    """``asyncio.timeout``'s behaviour on virtual time."""

    def __init__(self, clock: MockClock, deadline: float) -> None:
        self._clock = clock
        self._deadline = deadline
        self._timer: _MockTimer | None = None
        self._fired = False
        self._task: asyncio.Task[object] | None = None

    def start(self) -> None:
        self._task = asyncio.current_task()
        self._timer = self._clock.call_at(self._deadline, self._fire)

    def finish(self, cancelled: bool) -> None:
        assert self._timer is not None
        assert self._task is not None
        self._timer.cancel()
        if self._fired and cancelled and self._task.uncancel() == 0:
            raise TimeoutError

    def _fire(self) -> None:
        if self._task is not None and not self._task.done():
            self._fired = True
            self._task.cancel()


class MockClock:
    """Virtual time. Starts at ``start`` (default: a fixed date) and moves only when told to,
    or by itself when ``autojump`` is on and nothing has happened for ``autojump_threshold``
    real seconds."""

    wall = False

    def __init__(
        self,
        start: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
        *,
        autojump: bool = True,
        autojump_threshold: float = 0.002,
    ) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _MockTimer]] = []
        self._seq = itertools.count()
        self.autojump = autojump
        self.autojump_threshold = autojump_threshold
        self._jumper: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self._now

    def call_at(self, deadline: float, callback: Callable[[], None]) -> _MockTimer:
        timer = _MockTimer(deadline, callback)
        heapq.heappush(self._timers, (deadline, next(self._seq), timer))
        if deadline <= self._now:
            asyncio.get_running_loop().call_soon(self._fire_due)
        self._ensure_jumper()
        return timer

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        timer = self.call_at(deadline, wake)
        try:
            await fut
        finally:
            timer.cancel()

    def timeout_at(self, deadline: float) -> _MockTimeout:
        return _MockTimeout(self, deadline)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and fire every timer that became due."""
        self._now += seconds
        self._fire_due()

    def jump_to_next(self) -> bool:
        """Move time to the earliest pending timer and fire it; False if there is none."""
        self._drop_cancelled()
        if not self._timers:
            return False
        self._now = max(self._now, self._timers[0][0])
        self._fire_due()
        return True

    def _drop_cancelled(self) -> None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)

    def _fire_due(self) -> None:
        while True:
            self._drop_cancelled()
            if not self._timers or self._timers[0][0] > self._now:
                return
            _, _, timer = heapq.heappop(self._timers)
            timer.cancelled = True
            timer.callback()

    def _ensure_jumper(self) -> None:
        if self.autojump and (self._jumper is None or self._jumper.done()):
            self._jumper = asyncio.get_running_loop().create_task(self._autojump())

    async def _autojump(self) -> None:
        # Real-time idle detection, as trio's autojump_threshold: if no timer was added or fired
        # for a whole threshold, everything that can run is blocked on virtual time.
        while True:
            self._drop_cancelled()
            if not self._timers or not self.autojump:
                return
            marker = (len(self._timers), self._timers[0][1], self._now)
            await asyncio.sleep(self.autojump_threshold)
            self._drop_cancelled()
            if (
                self.autojump
                and self._timers
                and marker == (len(self._timers), self._timers[0][1], self._now)
            ):
                self.jump_to_next()

    @asynccontextmanager
    async def frozen(self) -> AsyncIterator[None]:
        """Disable autojump inside the block (for tests that step time by hand)."""
        previous, self.autojump = self.autojump, False
        try:
            yield
        finally:
            self.autojump = previous
            # Timers added while frozen started no jumper: start one now, or they never fire.
            self._ensure_jumper()
