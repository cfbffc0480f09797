"""The peer: DBOS Transact on SQLite, or on PostgreSQL (its production backend), the same
scenarios as ``bench/ours.py``.

``python bench/peer_dbos.py SCENARIO [--backend postgresql | --db postgresql://...] [options]``
prints one JSON object. Needs the ``bench`` extra (``pip install -e '.[bench]'``). DBOS keeps
process-global state, so every scenario runs in its own process. On PostgreSQL DBOS keeps its
system tables in an empty database of its own (``--db``, or without it a fresh one on
``$DWF_BENCH_POSTGRES``, dropped after), with its default pool and settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _dbos(db: Path | str) -> Any:
    """DBOS on SQLite at the path ``db``, or on PostgreSQL at the URL ``db``."""
    from dbos import DBOS

    DBOS(
        config={
            "name": "bench",
            "system_database_url": db if isinstance(db, str) else f"sqlite:///{db}",
            "log_level": "WARNING",
        }
    )
    return DBOS


def throughput(n: int, concurrency: int, db: Path | str) -> dict[str, Any]:
    dbos = _dbos(db)

    @dbos.step()
    async def a() -> int:
        return 1

    @dbos.step()
    async def b(x: int) -> int:
        return x + 1

    @dbos.step()
    async def c(x: int) -> int:
        return x + 1

    @dbos.workflow()
    async def three() -> int:
        return await c(await b(await a()))

    async def go() -> float:
        dbos.launch()
        sem = asyncio.Semaphore(concurrency)

        async def one() -> int:
            async with sem:
                handle = await dbos.start_workflow_async(three)
                result: int = await handle.get_result()
                return result

        await asyncio.gather(*(one() for _ in range(20)))  # warm-up, as ours
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(n)))
        elapsed = time.perf_counter() - t0
        assert all(r == 3 for r in results)
        return elapsed

    elapsed = asyncio.run(go())
    dbos.destroy()
    return {
        "instances": n,
        "concurrency": concurrency,
        "backend": "sqlite" if isinstance(db, Path) else "postgresql",
        "seconds": elapsed,
        "per_second": n / elapsed,
    }


def sequential(steps: int, db: Path | str) -> dict[str, Any]:
    dbos = _dbos(db)
    latencies: list[float] = []

    @dbos.step()
    async def s(i: int) -> int:
        return i

    @dbos.workflow()
    async def seq(n: int) -> int:
        last = time.perf_counter()
        for i in range(n):
            await s(i)
            now = time.perf_counter()
            latencies.append(now - last)
            last = now
        return n

    async def go() -> None:
        dbos.launch()
        handle = await dbos.start_workflow_async(seq, steps)
        await handle.get_result()

    asyncio.run(go())
    dbos.destroy()
    lat = sorted(latencies)
    return {
        "steps": steps,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
        "mean_ms": statistics.fmean(lat) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["throughput", "sequential"])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--db", default=None, help="a postgresql:// URL (an empty database)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        db: Path | str
        if args.db:
            db = args.db
        elif args.backend == "postgresql":
            import pgdb

            db = stack.enter_context(pgdb.fresh_database())
        else:
            db = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "dbos.sqlite3"
        if args.scenario == "throughput":
            result = throughput(args.instances, args.concurrency, db)
        else:
            result = sequential(args.steps, db)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # DBOS leaves non-daemon threads behind


if __name__ == "__main__":
    main()
