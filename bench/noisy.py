"""The noisy-neighbour benchmark: does one tenant's flood delay another tenant's work?

``python bench/noisy.py [--flood 50000] [--quiet 100] [--fair on|off|idle] [--a-rate N] [--db URL]``
prints one JSON object. Tenant A (scope ``a``) creates ``--flood`` 3-step instances as fast as
it can (batches of 100, back to back); one second later tenant B (scope ``b``) creates
``--quiet`` of them (one batch). The figures are B's times to completion (create to end,
from the rows' own times), p50 and p99: with fairness ``on``, ``off`` (first come, first
claimed: B's instances wait behind every instance A created before them), or ``idle`` (B alone
on an idle engine: the baseline). Measuring stops when B's instances are done (A's flood is
left unfinished: its own completion is not the question). ``--a-rate``: A's policy gets that
``create_rate`` (burst 100): its client then waits as a 429 says, as a well-behaved one does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ours import ThreeSteps

from dynamic_workflows import Engine, SQLiteStorage, TenantLimitError, open_storage
from dynamic_workflows.gcpolicy import tune_gc


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def noisy(
    flood: int,
    quiet: int,
    fair: str,
    db: Path,
    url: str | None,
    concurrency: int,
    a_rate: float | None = None,
) -> dict[str, Any]:
    storage = open_storage(url) if url else SQLiteStorage(db)
    engine = Engine(storage, concurrency=concurrency, fair=fair != "off")
    binding = engine.register("three", ThreeSteps)
    limits = None if a_rate is None else {"create_rate": a_rate, "create_burst": 100}
    a, b = binding.with_scope("a", limits=limits), binding.with_scope("b")
    created_by_a = 0
    async with engine:
        # Warm the path (both tenants' rows exist) before timing.
        await a.create_batch([{"params": {}} for _ in range(10)])
        await b.create_batch([{"params": {}} for _ in range(10)])
        while engine.counters.completed < 20:  # noqa: ASYNC110 (the engine's own counter)
            await asyncio.sleep(0.01)

        async def flood_a() -> None:
            nonlocal created_by_a
            for start in range(0, flood, 100):
                while True:
                    try:
                        await a.create_batch(
                            [{"params": {}} for _ in range(min(100, flood - start))]
                        )
                        break
                    except TenantLimitError as exc:  # a 429: wait as it says
                        await asyncio.sleep(exc.retry_after or 0.1)
                created_by_a += min(100, flood - start)

        flooding = asyncio.create_task(flood_a()) if fair != "idle" else None
        t0 = time.time()
        await asyncio.sleep(1.0)
        a_before_b = created_by_a
        asked = time.time()
        instances = await b.create_batch([{"params": {}} for _ in range(quiet)])
        create_ms = (time.time() - asked) * 1000
        ids = {i.id for i in instances}  # type: ignore[union-attr]
        deadline = time.monotonic() + 600
        while True:
            rows = await storage.list_instances("three", scope="b", status="complete", limit=1000)
            done = [r for r in rows if r.id in ids]
            if len(done) == quiet:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)} of B's {quiet} done after 600 s")
            await asyncio.sleep(0.02)
        a_done = (await storage.count_instances("three", scope="a")).get("complete", 0) - 10
        if flooding is not None:
            flooding.cancel()
    latencies = [(r.ended_at or 0.0) - r.created_at for r in done]
    waits = [(r.started_at or 0.0) - r.created_at for r in done]  # created to claimed
    runs = [(r.ended_at or 0.0) - (r.started_at or 0.0) for r in done]  # claimed to ended
    return {
        "fair": fair,
        "a_rate": a_rate,
        "backend": "postgresql" if url else "sqlite",
        "flood": flood,
        "quiet": quiet,
        "concurrency": concurrency,
        "a_created_before_b": a_before_b,
        "a_created_total": created_by_a,
        "a_completed_while_b_ran": a_done,
        "b_p50_ms": statistics.median(latencies) * 1000,
        "b_p99_ms": _percentile(latencies, 0.99) * 1000,
        "b_max_ms": max(latencies) * 1000,
        "seconds": time.time() - t0,
        # Where B's time goes: its create call, then per instance the wait for a claim and
        # the run (three steps).
        "b_create_ms": create_ms,
        "b_claim_wait_p50_ms": statistics.median(waits) * 1000,
        "b_claim_wait_p99_ms": _percentile(waits, 0.99) * 1000,
        "b_run_p50_ms": statistics.median(runs) * 1000,
        "b_run_p99_ms": _percentile(runs, 0.99) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=50_000)
    parser.add_argument("--quiet", type=int, default=100)
    parser.add_argument("--fair", choices=["on", "off", "idle"], default="on")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--a-rate", type=float, default=None, help="A's create_rate")
    parser.add_argument("--db", default=None, help="a postgresql:// URL (an empty database)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    tune_gc()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(
            noisy(
                args.flood,
                args.quiet,
                args.fair,
                Path(tmp) / "bench.sqlite3",
                args.db,
                args.concurrency,
                args.a_rate,
            )
        )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
