"""Our engine's benchmark scenarios. Each prints one JSON object on stdout.

``python bench/ours.py SCENARIO [--mode trusted|sandboxed] [options]``; ``bench/run.py`` runs
them all, side by side with the peer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dynamic_workflows import Engine, SQLiteStorage
from dynamic_workflows.gcpolicy import IdleCollector, tune_gc
from dynamic_workflows.workers import WorkflowEntrypoint


@contextlib.asynccontextmanager
async def idle_collection(engine: Engine) -> AsyncIterator[None]:
    """Full garbage collections in idle moments, as `dwf serve` makes them."""
    collector = IdleCollector(quiet=engine.quiet)
    collector.start()
    try:
        yield
    finally:
        collector.stop()


class ThreeSteps(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do("a")
        async def a() -> int:
            return 1

        @step.do("b")
        async def b(a: int) -> int:
            return a + 1

        @step.do("c")
        async def c(b: int) -> int:
            return b + 1

        return await c()


SEQUENTIAL_LATENCIES: list[float] = []


class Sequential(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        n = event["payload"]["steps"]
        last = time.perf_counter()
        for i in range(n):

            @step.do("s")
            async def s() -> int:
                return i  # noqa: B023 - awaited in this same iteration

            await s()
            now = time.perf_counter()
            SEQUENTIAL_LATENCIES.append(now - last)
            last = now
        return n


def lateness(due: float) -> float:
    """What SleepUntil's step returns: how late it started (bench/profile_timers.py wraps it)."""
    return time.time() - due


class SleepUntil(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        due = event["payload"]["due"]
        await step.sleep_until("alarm", due * 1000)

        @step.do("woke")
        async def woke() -> float:
            return lateness(due)

        return await woke()


# -- the sandboxed path: the engine runs a trusted dispatcher that forwards to the loader -----

TENANT_SOURCE = """
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("a")
        async def a():
            return 1

        @step.do("b")
        async def b(a):
            return a + 1

        @step.do("c")
        async def c(b):
            return b + 1

        return await c()
"""


TIMER_TENANT_SOURCE = """
import time
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        due = event["payload"]["due"]
        await step.sleep_until("alarm", due * 1000)

        @step.do("woke")
        async def woke():
            return time.time() - due

        return await woke()
"""


def sandboxed_entrypoint(
    source: str = TENANT_SOURCE, memory_mb: int | None = None
) -> tuple[type, Any]:
    """A dispatcher workflow whose run forwards to the tenant's code in a sandboxed worker."""
    from dynamic_workflows.sandbox.loader import Loader

    loader = Loader(limits=None if memory_mb is None else {"memory_mb": memory_mb})
    code = {"main_module": "tenant.py", "modules": {"tenant.py": source}}

    class Dispatcher(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            stub = loader.get("bench-tenant", lambda: code)
            return await stub.get_entrypoint("TenantWorkflow").run(event, step)

    return Dispatcher, loader


async def wait_all(engine: Engine, workflow: str, n: int, timeout: float = 600) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = await engine.storage.count_instances(workflow)
        if counts.get("complete", 0) + counts.get("errored", 0) >= n:
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"{counts} after {timeout} s")
        await asyncio.sleep(0.005)


async def throughput(n: int, concurrency: int, mode: str, db: Path) -> dict[str, Any]:
    engine = Engine(SQLiteStorage(db), concurrency=concurrency)
    loader = None
    if mode == "sandboxed":
        entry, loader = sandboxed_entrypoint()
    else:
        entry = ThreeSteps
    binding = engine.register("three", entry)
    async with engine, idle_collection(engine):
        if loader is not None and hasattr(loader, "start"):
            await loader.start()
        # warm the path (and the tenant's worker) before timing
        await binding.create_batch([{"params": {}} for _ in range(20)])
        await wait_all(engine, "three", 20)
        t0 = time.perf_counter()
        for start in range(0, n, 100):
            await binding.create_batch([{"params": {}} for _ in range(min(100, n - start))])
        counts = await wait_all(engine, "three", n + 20)
        elapsed = time.perf_counter() - t0
        stats = getattr(engine.storage, "stats", {})
        if loader is not None and hasattr(loader, "close"):
            await loader.close()
    return {
        "instances": n,
        "concurrency": concurrency,
        "mode": mode,
        "seconds": elapsed,
        "per_second": n / elapsed,
        "errored": counts.get("errored", 0),
        "operations_per_commit": stats.get("operations", 0) / max(1, stats.get("commits", 1)),
    }


async def sequential(steps: int, db: Path) -> dict[str, Any]:
    SEQUENTIAL_LATENCIES.clear()
    engine = Engine(SQLiteStorage(db))
    binding = engine.register("seq", Sequential)
    async with engine, idle_collection(engine):
        await binding.create(params={"steps": steps})
        await wait_all(engine, "seq", 1)
    lat = sorted(SEQUENTIAL_LATENCIES)
    return {
        "steps": steps,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
        "mean_ms": statistics.fmean(lat) * 1000,
    }


async def timers(
    n: int, db: Path, lead: float, mode: str, concurrency: int = 256, memory_mb: int | None = None
) -> dict[str, Any]:
    engine = Engine(SQLiteStorage(db), concurrency=concurrency)
    loader = None
    if mode == "sandboxed":
        # Parked runs live in the tenant's worker (~13 KB each) and may take half its memory
        # allowance: 10,000 need more than the default 128 MiB.
        entry, loader = sandboxed_entrypoint(TIMER_TENANT_SOURCE, memory_mb)
    else:
        entry = SleepUntil
    binding = engine.register("alarm", entry)
    async with engine, idle_collection(engine):
        if loader is not None:
            await loader.start()
        due = time.time() + lead
        for start in range(0, n, 100):
            await binding.create_batch(
                [{"params": {"due": due}} for _ in range(min(100, n - start))]
            )
        deadline = time.monotonic() + 600
        while True:
            counts = await engine.storage.count_instances("alarm")
            if counts.get("waiting", 0) >= n or time.time() >= due:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(str(counts))
            await asyncio.sleep(0.01)
        all_asleep_before_due = counts.get("waiting", 0) >= n and time.time() < due
        # Instances due within the warm horizon are replayed ahead of time and parked: how many
        # of them were, just before the due instant.
        await asyncio.sleep(max(0.0, due - time.time() - 0.05))
        parked_before_due = engine.parked_runs()
        await wait_all(engine, "alarm", n)
        rows = await engine.storage.list_instances("alarm", limit=n + 1)
        if loader is not None:
            await loader.close()
    late = sorted(json.loads(r.output or b"0") for r in rows)
    return {
        "instances": n,
        "mode": mode,
        "memory_mb": memory_mb,
        "all_asleep_before_due": all_asleep_before_due,
        "parked_before_due": parked_before_due,
        "late_ms_quantiles": {
            str(q): round(late[int(q * (len(late) - 1))] * 1000, 1)
            for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9)
        },
        "p50_late_ms": late[len(late) // 2] * 1000,
        "p99_late_ms": late[int(len(late) * 0.99) - 1] * 1000,
        "max_late_ms": late[-1] * 1000,
    }


def commit_floor(n: int, db: Path) -> dict[str, Any]:
    """The machine's floor for one durable step: ``BEGIN; INSERT; COMMIT`` in WAL mode with
    ``synchronous=FULL`` (an fsync), one at a time, as the sequential scenario commits."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE steps (n INTEGER, value BLOB)")
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO steps VALUES (?, ?)", (i, b"1"))
        conn.execute("COMMIT")
        lat.append(time.perf_counter() - t0)
    conn.close()
    lat.sort()
    return {
        "commits": n,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
    }


def floor(n: int, db: Path) -> dict[str, Any]:
    """The machine's floor for the 3-step workload: plain calls, one batched insert per step."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE steps (instance INTEGER, name TEXT, value BLOB)")

    def step(x: int) -> int:
        return x + 1

    t0 = time.perf_counter()
    values = [0] * n
    for name in ("a", "b", "c"):
        values = [step(v) for v in values]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO steps VALUES (?, ?, ?)",
            ((i, name, json.dumps(v).encode()) for i, v in enumerate(values)),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return {"instances": n, "seconds": elapsed, "per_second": n / elapsed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "scenario", choices=["throughput", "sequential", "timers", "floor", "commit-floor"]
    )
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--mode", choices=["trusted", "sandboxed"], default="trusted")
    parser.add_argument("--lead", type=float, default=10.0)
    parser.add_argument("--memory-mb", type=int, default=None, help="the sandboxed tenant's")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    # The engine runs here as it does in `dwf serve`: on uvloop, with the server's GC settings.
    tune_gc()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite3"
        if args.scenario == "throughput":
            result = asyncio.run(throughput(args.instances, args.concurrency or 50, args.mode, db))
        elif args.scenario == "sequential":
            result = asyncio.run(sequential(args.steps, db))
        elif args.scenario == "timers":
            result = asyncio.run(
                timers(
                    args.instances,
                    db,
                    args.lead,
                    args.mode,
                    args.concurrency or 256,
                    args.memory_mb,
                )
            )
        elif args.scenario == "commit-floor":
            result = commit_floor(args.steps, db)
        else:
            result = floor(args.instances, db)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
