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

from dynamic_workflows import Engine, SQLiteStorage, open_storage
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


PRINTING_TENANT_SOURCE = """
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("a")
        async def a():
            print("step a of", event["instanceId"])
            return 1

        @step.do("b")
        async def b(a):
            print("step b of", event["instanceId"], "got", a)
            return a + 1

        @step.do("c")
        async def c(b):
            print("step c of", event["instanceId"], "got", b)
            return b + 1

        return await c()
"""
"""The same three steps, each printing one line (captured and stored with its attempt)."""


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


async def wait_all_counted(
    engine: Engine, workflow: str, n: int, timeout: float = 600
) -> dict[str, int]:
    """``wait_all`` without polling the database: the engine's own count of the runs it ended
    (every run is this engine's), then one count from the database to confirm. On PostgreSQL a
    poll every 5 ms would be a round trip billed to the steps; on SQLite a count every 5 ms
    ran on the one writer thread, between the commits it was timing (py-spy: a fifth of the
    host's samples in the printing run)."""
    deadline = time.monotonic() + timeout
    counters = engine.counters
    while counters.completed + counters.errored < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{counters} after {timeout} s")
        await asyncio.sleep(0.005)
    return await wait_all(engine, workflow, n, timeout=max(1.0, deadline - time.monotonic()))


class _CountedSession:
    """A PostgreSQL session lent to one storage operation, counting its statements under the
    operation's name (the storage's own counter is one total for all)."""

    def __init__(self, session: Any, tally: list[int]) -> None:
        self._session = session
        self._tally = tally

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._session, name)
        if name in ("fetch", "fetchrow", "fetchval", "execute"):
            tally = self._tally

            def counted(*args: Any, **kwargs: Any) -> Any:
                tally[1] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


def round_trips_by_operation(storage: Any) -> dict[str, list[int]] | None:
    """Count PostgreSQL round trips per storage operation from now on: ``{operation: [calls,
    round trips]}``, BEGIN and COMMIT included (a retry's are not). None on another backend.
    Reaches into the storage's connection layer: a diagnostic of the benchmark only."""
    db = getattr(storage, "_db", None)
    if db is None or not hasattr(db, "run"):
        return None
    by_op: dict[str, list[int]] = {}
    original = db.run

    async def run(op: str, fn: Any, *, write: bool, **kwargs: Any) -> Any:
        tally = by_op.setdefault(op, [0, 0])
        tally[0] += 1
        if kwargs.get("transaction"):
            tally[1] += 2
        return await original(op, lambda s: fn(_CountedSession(s, tally)), write=write, **kwargs)

    db.run = run
    return by_op


async def throughput(
    n: int,
    concurrency: int,
    mode: str,
    db: Path,
    url: str | None = None,
    *,
    print_per_step: bool = False,
    fair: bool = True,
    idle_tenants: int = 0,
) -> dict[str, Any]:
    """``url``: a storage URL (``postgresql://...``) instead of SQLite at ``db``;
    ``print_per_step``: the sandboxed tenant prints one line in each step; ``fair``: claims in
    turns across tenants (off: first come, first claimed, as before fairness existed);
    ``idle_tenants``: that many other tenants first ran one instance each, and have nothing
    due while the measured one runs (what a claim costs beside many tenants)."""
    storage = open_storage(url) if url else SQLiteStorage(db)
    engine = Engine(storage, concurrency=concurrency, fair=fair)
    loader = None
    if mode == "sandboxed":
        entry, loader = sandboxed_entrypoint(
            PRINTING_TENANT_SOURCE if print_per_step else TENANT_SOURCE
        )
    else:
        entry = ThreeSteps
    binding = engine.register("three", entry)
    async with engine, idle_collection(engine):
        if loader is not None and hasattr(loader, "start"):
            await loader.start()
        for i in range(idle_tenants):
            await binding.with_scope(f"idle-{i}").create_batch([{"params": {}}])
        # warm the path (and the tenant's worker) before timing
        await binding.create_batch([{"params": {}} for _ in range(20)])
        await wait_all_counted(engine, "three", 20 + idle_tenants)
        before = dict(getattr(engine.storage, "stats", {}))
        by_op = round_trips_by_operation(engine.storage)
        steps_before = engine.counters.steps_committed
        t0 = time.perf_counter()
        for start in range(0, n, 100):
            await binding.create_batch([{"params": {}} for _ in range(min(100, n - start))])
        counts = await wait_all_counted(engine, "three", n + 20 + idle_tenants)
        elapsed = time.perf_counter() - t0
        steps = engine.counters.steps_committed - steps_before
        after = dict(getattr(engine.storage, "stats", {}))
        stats = {k: v - before.get(k, 0) for k, v in after.items()}
        if loader is not None and hasattr(loader, "close"):
            await loader.close()
    result = {
        "instances": n,
        "concurrency": concurrency,
        "mode": mode,
        "backend": "postgresql" if url else "sqlite",
        "seconds": elapsed,
        "per_second": n / elapsed,
        "errored": counts.get("errored", 0),
        "operations_per_commit": stats.get("operations", 0) / max(1, stats.get("commits", 1)),
        "steps_committed": steps,
        "idle_tenants": idle_tenants,
    }
    if "round_trips" in stats:
        # Everything the timed window sent to the server (creation, claims, step writes, the
        # runs' ends, lease renewals, and the one final count), per step committed in it.
        result["stats"] = stats
        result["round_trips_per_step"] = stats["round_trips"] / max(1, steps)
        result["commits_per_step"] = stats["commits"] / max(1, steps)
        if by_op is not None:
            result["round_trips_by_operation"] = dict(
                sorted(by_op.items(), key=lambda kv: -kv[1][1])
            )
    return result


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


async def pg_commit_floor(url: str, connections: int, seconds: float) -> dict[str, Any]:
    """PostgreSQL's floor for durable commits: ``BEGIN; INSERT one row; COMMIT`` with
    ``synchronous_commit=on`` (the commit waits for the WAL flush), one after another on each of
    ``connections`` connections for ``seconds``; commits per second over all of them."""
    import asyncpg

    settings = {"synchronous_commit": "on"}
    setup = await asyncpg.connect(url, server_settings=settings)
    await setup.execute("CREATE TABLE floor_steps (n bigint, value bytea)")
    await setup.close()
    conns = [
        await asyncpg.connect(url, server_settings=settings, statement_cache_size=100)
        for _ in range(connections)
    ]
    latencies: list[float] = []
    stop = False

    async def committer(conn: Any, k: int) -> int:
        done = 0
        i = k * 10_000_000
        while not stop:
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.execute("INSERT INTO floor_steps VALUES ($1, $2)", i, b"1")
            latencies.append(time.perf_counter() - t0)
            done += 1
            i += 1
        return done

    try:
        # warm each connection (prepared statement, first WAL segment touched)
        for k, conn in enumerate(conns):
            async with conn.transaction():
                await conn.execute("INSERT INTO floor_steps VALUES ($1, $2)", -1 - k, b"0")
        latencies.clear()
        tasks = [asyncio.ensure_future(committer(c, k)) for k, c in enumerate(conns)]
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        stop = True
        counts = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    finally:
        for conn in conns:
            await conn.close()
    lat = sorted(latencies)
    total = sum(counts)
    return {
        "connections": connections,
        "commits": total,
        "seconds": elapsed,
        "per_second": total / elapsed,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "scenario",
        choices=["throughput", "sequential", "timers", "floor", "commit-floor", "pg-commit-floor"],
    )
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--mode", choices=["trusted", "sandboxed"], default="trusted")
    parser.add_argument("--lead", type=float, default=10.0)
    parser.add_argument("--memory-mb", type=int, default=None, help="the sandboxed tenant's")
    parser.add_argument(
        "--print-per-step",
        action="store_true",
        help="throughput, sandboxed: the tenant prints one line in each step",
    )
    parser.add_argument(
        "--db",
        default=None,
        help="throughput, pg-commit-floor: a postgresql:// URL (an empty database) to use",
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="postgresql without --db: a fresh database on $DWF_BENCH_POSTGRES, dropped after",
    )
    parser.add_argument(
        "--fairness", choices=["on", "off"], default="on", help="throughput: fair claiming"
    )
    parser.add_argument(
        "--idle-tenants", type=int, default=0, help="throughput: other tenants, nothing due"
    )
    parser.add_argument("--connections", type=int, default=1, help="pg-commit-floor")
    parser.add_argument("--seconds", type=float, default=3.0, help="pg-commit-floor")
    args = parser.parse_args(argv)
    if args.db is None and (args.backend == "postgresql" or args.scenario == "pg-commit-floor"):
        import pgdb

        with pgdb.fresh_database() as url:
            main([*(argv if argv is not None else sys.argv[1:]), "--db", url])
        return
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
            result = asyncio.run(
                throughput(
                    args.instances,
                    args.concurrency or 50,
                    args.mode,
                    db,
                    args.db,
                    print_per_step=args.print_per_step,
                    fair=args.fairness == "on",
                    idle_tenants=args.idle_tenants,
                )
            )
        elif args.scenario == "pg-commit-floor":
            result = asyncio.run(pg_commit_floor(args.db, args.connections, args.seconds))
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
