"""Many instances waiting for an event at once: what each costs while it waits, and how fast
events then complete them.

Run: ``.venv/bin/python bench/waiting.py --instances 10000 [--db PATH] [--json OUT]``

Prints one JSON object: process memory (RSS) and Python heap retained per waiting instance,
live runs and asyncio tasks while they wait, and the completion rate once events are sent.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from dynamic_workflows import Engine, SQLiteStorage
from dynamic_workflows.workers import WorkflowEntrypoint


class Approval(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do("prepare")
        async def prepare() -> str:
            return "ready"

        await prepare()
        approval = await step.wait_for_event("approval", "approve", timeout="1 day")
        return approval["payload"]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def wait_count(engine: Engine, status: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = await engine.storage.count_instances("approval")
        if counts.get(status, 0) >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {counts} after {timeout} s (wanted {n} {status})")
        await asyncio.sleep(0.05)


async def create(engine: Engine, prefix: str, n: int) -> list[str]:
    binding = engine.workflow("approval")
    ids = [f"{prefix}{i}" for i in range(n)]
    for start in range(0, n, 100):
        await binding.create_batch([{"id": i, "params": {}} for i in ids[start : start + 100]])
    return ids


async def send_all(engine: Engine, ids: list[str]) -> None:
    binding = engine.workflow("approval")
    sem = asyncio.Semaphore(200)

    async def one(iid: str) -> None:
        async with sem:
            instance = await binding.get(iid)
            await instance.send_event(type="approve", payload={"by": "bench"})

    await asyncio.gather(*(one(i) for i in ids))


async def measure(instances: int, db: Path) -> dict[str, Any]:
    engine = Engine(SQLiteStorage(db), concurrency=256)
    engine.register("approval", Approval)
    async with engine:
        # Warm up every code path (and SQLite's caches) so the measurement sees steady state.
        warm = await create(engine, "warm", 500)
        await wait_count(engine, "waiting", 500, 60)
        await send_all(engine, warm)
        await wait_count(engine, "complete", 500, 60)

        gc.collect()
        rss_before = rss_bytes()
        tasks_before = len(asyncio.all_tasks())
        tracemalloc.start()
        heap_before = tracemalloc.get_traced_memory()[0]

        t0 = time.perf_counter()
        ids = await create(engine, "w", instances)
        await wait_count(engine, "waiting", instances, 600)
        to_waiting = time.perf_counter() - t0

        gc.collect()
        heap_after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rss_after = rss_bytes()
        tasks_waiting = len(asyncio.all_tasks())
        live_runs = engine.live_runs()

        t1 = time.perf_counter()
        await send_all(engine, ids)
        await wait_count(engine, "complete", instances + 500, 600)
        to_complete = time.perf_counter() - t1
        counts = await engine.storage.count_instances("approval")

    return {
        "instances": instances,
        "rss_bytes_per_waiting_instance": (rss_after - rss_before) / instances,
        "heap_bytes_per_waiting_instance": (heap_after - heap_before) / instances,
        "rss_before_mib": rss_before / 2**20,
        "rss_after_mib": rss_after / 2**20,
        "asyncio_tasks_before": tasks_before,
        "asyncio_tasks_while_waiting": tasks_waiting,
        "live_runs_while_waiting": live_runs,
        "seconds_to_all_waiting": to_waiting,
        "events_completed_per_second": instances / to_complete,
        "final_counts": counts,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "waiting.sqlite3"
        result = asyncio.run(measure(args.instances, db))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
