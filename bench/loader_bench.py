"""Worker Loader latency: cold (first request to a new tenant id, pool warm) and warm (a loaded
tenant) round trips, for ``fetch`` and for an RPC call; and private memory per warm worker.

    .venv/bin/python bench/loader_bench.py [--n 300] [--out bench/results/loader.json]

Cold: ``LOADER.get(new_id, get_code)`` then one call: get_code, a pre-forked confined worker
taken from the pool, the code sent and imported, the call, the answer. The pool is refilled in
the background; the bench waits for it between cold samples so every cold request finds a
warm worker (the steady state the pool exists for).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from dynamic_workflows.sandbox.confine import probe
from dynamic_workflows.sandbox.loader import Loader

SOURCE = """
from workers import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response.json({"path": request.url, "tenant": self.env.TENANT})

    async def add(self, a, b):
        return a + b
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def code_for(tenant: str) -> Any:
    return lambda: {
        "main_module": "main.py",
        "modules": {"main.py": SOURCE},
        "env": {"TENANT": tenant},
    }


async def wait_warm(loader: Loader, warm: int) -> None:
    while len(loader.pool._ready) < warm:  # noqa: ASYNC110 - polling a private count is fine here
        await asyncio.sleep(0.002)


async def bench(n: int, warm: int) -> dict[str, Any]:
    report = probe()
    results: dict[str, Any] = {"isolation": report.summary()}
    async with Loader(
        report=report,
        unconfined=not report.safe_for_untrusted(),
        warm=warm,
        max_workers=n * 2 + 10,
        zygote_max_forks=10_000,
    ) as loader:
        await wait_warm(loader, warm)
        for kind in ("fetch", "rpc"):
            cold: list[float] = []
            for i in range(n):
                await wait_warm(loader, warm)
                tenant = f"{kind}-{i}"
                start = time.perf_counter()
                entry = loader.get(tenant, code_for(tenant)).get_entrypoint()
                if kind == "fetch":
                    await entry.fetch("https://bench/x")
                else:
                    await entry.add(1, 2)
                cold.append((time.perf_counter() - start) * 1000)
            warm_samples: list[float] = []
            entry = loader.get(f"{kind}-0", code_for(f"{kind}-0")).get_entrypoint()
            for _ in range(n * 5):
                start = time.perf_counter()
                if kind == "fetch":
                    await entry.fetch("https://bench/x")
                else:
                    await entry.add(1, 2)
                warm_samples.append((time.perf_counter() - start) * 1000)
            for label, samples in (("cold", cold), ("warm", warm_samples)):
                results[f"{kind}_{label}"] = {
                    "n": len(samples),
                    "p50_ms": round(statistics.median(samples), 3),
                    "p99_ms": round(pct(samples, 99), 3),
                    "mean_ms": round(statistics.fmean(samples), 3),
                }
        await wait_warm(loader, warm)
        idle = [await w.private_bytes() for w in list(loader.pool._ready)]
        results["private_bytes_per_idle_pool_worker"] = [m for m in idle if m]
        memory = [m for m in (await loader.memory()).values() if m]
        results["private_bytes_per_warm_worker"] = {
            "workers": len(memory),
            "median": int(statistics.median(memory)) if memory else None,
            "max": max(memory) if memory else None,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="cold samples per kind")
    parser.add_argument("--warm", type=int, default=2, help="pre-forked workers kept ready")
    parser.add_argument("--out", default="bench/results/loader.json")
    args = parser.parse_args()
    results = asyncio.run(bench(args.n, args.warm))
    print(results["isolation"])
    print(f"{'case':<12} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for case in ("fetch_cold", "fetch_warm", "rpc_cold", "rpc_warm"):
        r = results[case]
        print(
            f"{case:<12} {r['n']:>6} {r['p50_ms']:>9.3f} {r['p99_ms']:>9.3f} {r['mean_ms']:>9.3f}"
        )
    mem = results["private_bytes_per_warm_worker"]
    if mem["median"]:
        print(
            f"private memory per warm worker: median {mem['median'] / 2**20:.1f} MiB, "
            f"max {mem['max'] / 2**20:.1f} MiB over {mem['workers']} workers"
        )
    idle = results["private_bytes_per_idle_pool_worker"]
    if idle:
        print(f"private memory per idle pre-forked worker: {min(idle) / 2**20:.1f} MiB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
