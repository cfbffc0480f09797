"""CPU cost of the step machinery alone: N parked runs woken at the same instant, no storage.

``python bench/step_machinery.py [--instances 10000] [--rounds 7] [--mode trusted|sandboxed]``
builds N runs as the engine's trusted path does (a ``LiveRun`` as the step channel, a
``WorkflowStep``, ``drive`` with a park policy, ``run_with_rollback`` around the timers
scenario's workflow: ``sleep_until`` then one ``@step.do``), lets every one park on its sleep,
then wakes them all from one callback, as the clock's bucket of due timers does. The storage is
a stub that resolves each loop iteration's writes in the next one.

It prints, per woken run, the CPU time (``time.process_time``) from the wake-up to the start of
the last step body ("pre-body": what bounds the timers rows' p99) and to the end of the last
run ("total"), the median and min of ``--rounds`` rounds in one process.
``--mode sandboxed`` measures the worker's side instead: a channel whose ``attempt_started``
builds the sandbox's notice arguments (no socket), with an attempt guard and a log sink set,
as in a tenant's worker.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from dynamic_workflows.core.clock import SystemClock
from dynamic_workflows.core.limits import DEFAULT_LIMITS
from dynamic_workflows.core.replay import drive
from dynamic_workflows.core.rollback import run_with_rollback
from dynamic_workflows.core.step import RunState, WorkflowStep
from dynamic_workflows.engine import LiveRun

WORKFLOW_STEP_PARAMETERS = inspect.signature(WorkflowStep).parameters

BODIES = [0]
PRE_BODY: list[float] = [0.0]
N = [0]
MARKS: Any = None
"""With ``--callgrind LIB``: a library of ``cg_on``/``cg_dump``/``cg_off`` (callgrind client
requests), so that ``valgrind --tool=callgrind --collect-atstart=no`` counts the instructions of
the window alone (the wake-up to the last body, dumped; then on to the last run's end)."""


class _Handle:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(SystemClock):
    """The system clock, except that timers fire only when :meth:`fire` says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[_Handle] = []

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Any:
        handle = _Handle(callback)
        self.pending.append(handle)
        return handle

    async def sleep_until(self, deadline: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(_Handle(lambda: fut.done() or fut.set_result(None)))
        await fut

    def fire(self) -> None:
        pending, self.pending = self.pending, []
        for handle in pending:
            if not handle.cancelled:
                handle.callback()


class StubWrites:
    """The engine's StepWrites without storage: each iteration's writes commit in the next."""

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []
        self._scheduled = False

    def add(self, pk: int, generation: int, entry: Any, logs: Any = None) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._futures.append(fut)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def add_logs(self, logs: Any) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        futures, self._futures = self._futures, []
        for fut in futures:
            if not fut.done():
                fut.set_result(None)


def body_started() -> int:
    BODIES[0] += 1
    if BODIES[0] == N[0]:
        PRE_BODY[0] = time.process_time()
        if MARKS is not None:
            MARKS.cg_dump()
    return 1


async def workflow(step: Any, due: float) -> Any:
    await step.sleep_until("alarm", due * 1000)

    @step.do("woke")
    async def woke() -> int:
        return body_started()

    return await woke()


class SandboxChannel:
    """What a tenant's worker does per step on its side (``RemoteStepChannel``), with no
    socket: the notice's arguments are read, the write is left out; results commit in the next
    iteration."""

    def __init__(self, clock: ManualClock, writes: StubWrites) -> None:
        self._clock = clock
        self._writes = writes
        self.notices = 0

    def complete(self, *args: Any) -> asyncio.Future[None]:
        return self._writes.add(0, 0, args)

    async def fail(self, *args: Any) -> float | None:
        raise AssertionError("no step fails here")

    async def sleep(self, name: str, count: int, until: float | None, seconds: float) -> float:
        await self._writes.add(0, 0, None)
        return until if until is not None else time.time() + seconds

    async def wait_for_event(self, *args: Any) -> Any:
        raise AssertionError("no event waits here")

    async def wake(self, name: str, count: int, timer: float | None = None) -> bytes | None:
        assert timer is not None
        await self._clock.sleep_until(timer)
        return None

    def attempt_started(
        self, name: str, count: int, attempt: int, retry_in: float | None, rollback: bool = False
    ) -> None:
        self.notices += 1

    def log(self, lines: Any) -> None:
        pass


class Guard:
    """An attempt guard that only counts (the worker's arms a timer signal)."""

    def __init__(self) -> None:
        self.latest_timeout = 0.0
        self._next = 0

    def begin(self, timeout: float) -> int:
        self.latest_timeout = timeout
        self._next += 1
        return self._next

    def end(self, token: int) -> None:
        pass


async def one_round(n: int, mode: str, marks: Any = None) -> tuple[float, float]:
    clock = ManualClock()
    writes = StubWrites()
    engine = SimpleNamespace(clock=clock, limits=DEFAULT_LIMITS, writes=writes)
    due = time.time() + 3600
    runs = []
    guard = Guard() if mode == "sandboxed" else None
    for pk in range(n):
        channel: Any
        if mode == "trusted":
            row = SimpleNamespace(
                pk=pk, generation=1, rollback=None, scope="s", workflow="w", id=str(pk)
            )
            live = LiveRun(engine, row, [])  # type: ignore[arg-type]
            channel, state = live, live.state
        else:
            channel, state = SandboxChannel(clock, writes), RunState()
        kwargs: dict[str, Any] = {"clock": clock, "now": time.time(), "state": state}
        if guard is not None:
            kwargs["guard"] = guard
        elif "logs" in WORKFLOW_STEP_PARAMETERS:
            kwargs["logs"] = False  # as the engine makes it (older code has no such option)
        step = WorkflowStep(channel, [], **kwargs)
        state.park_policy = lambda wake_at: lambda: None

        def run(step: Any = step) -> Any:
            return workflow(step, due)

        def with_rollback(run: Any = run, step: Any = step) -> Any:
            return run_with_rollback(run, step)

        runs.append(asyncio.ensure_future(drive(with_rollback, state)))
    # Let every run reach its sleep and park.
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(clock.pending) == n, len(clock.pending)
    BODIES[0] = 0
    N[0] = n
    global MARKS
    MARKS = marks
    gc.collect()
    gc.disable()
    try:
        done = asyncio.get_running_loop().create_future()
        t0 = 0.0

        def fire() -> None:
            nonlocal t0
            t0 = time.process_time()
            if marks is not None:
                marks.cg_on()
            clock.fire()

        asyncio.get_running_loop().call_soon(fire)
        results = await asyncio.gather(*runs)
        t_end = time.process_time()
        if marks is not None:
            marks.cg_off()
        del done
    finally:
        gc.enable()
    assert BODIES[0] == n, BODIES[0]
    assert all(type(r).__name__ == "Completed" for r in results), results[:3]
    return (PRE_BODY[0] - t0) / n * 1e6, (t_end - t0) / n * 1e6


async def main_async(n: int, rounds: int, mode: str, marks: Any) -> None:
    pre, total = [], []
    await one_round(min(n, 1000), mode)  # warm-up
    for _ in range(rounds):
        p, t = await one_round(n, mode, marks)
        pre.append(p)
        total.append(t)
    print(
        f"{mode}: {n:,} runs woken at once, CPU per run: pre-body median "
        f"{statistics.median(pre):.2f} us (min {min(pre):.2f}), total median "
        f"{statistics.median(total):.2f} us (min {min(total):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--mode", choices=["trusted", "sandboxed"], default="trusted")
    parser.add_argument("--asyncio", action="store_true", help="the default loop, not uvloop")
    parser.add_argument("--callgrind", help="a library of callgrind markers (see MARKS)")
    args = parser.parse_args()
    if args.callgrind:
        import ctypes

        marks = ctypes.CDLL(args.callgrind)
    else:
        marks = None
    if not args.asyncio:
        import uvloop

        uvloop.install()
    asyncio.run(main_async(args.instances, args.rounds, args.mode, marks))


if __name__ == "__main__":
    main()
