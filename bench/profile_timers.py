"""Profile of the timers scenario's burst, trusted mode: where the CPU goes between the instant
10,000 sleepers are due and the instant 99% of them have started their next step's body.

``python bench/profile_timers.py [--instances 10000] [--lead 8]`` runs ``bench/ours.py``'s
timers scenario with cProfile switched on when the bucket of due timers fires and off when the
99th percentile body starts, and prints the lateness and the profile (cProfile's per-call
overhead inflates every figure about twofold; the shares are what it is for).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ours

from dynamic_workflows.core import clock
from dynamic_workflows.gcpolicy import tune_gc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--lead", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    n = args.instances
    profiler = cProfile.Profile()
    started = [0]

    fire = clock._Alarms._fire

    def profiled_fire(self: Any, bucket: Any) -> None:
        if len(bucket.alarms) >= n // 2 and not started[0]:
            started[0] = 1
            profiler.enable()
        fire(self, bucket)

    clock._Alarms._fire = profiled_fire  # type: ignore[method-assign]

    lateness = ours.lateness

    def profiled_lateness(due: float) -> float:
        started[0] += 1
        if started[0] == int(n * 0.99) + 1:
            profiler.disable()
        return lateness(due)

    ours.lateness = profiled_lateness
    import uvloop

    uvloop.install()
    tune_gc()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(ours.timers(n, Path(tmp) / "bench.sqlite3", args.lead, "trusted"))
    print(
        f"{n:,} sleepers, trusted, under cProfile: p50 {result['p50_late_ms']:.0f} ms, "
        f"p99 {result['p99_late_ms']:.0f} ms late"
    )
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
