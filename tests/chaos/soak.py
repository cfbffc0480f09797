"""The long form of tests/chaos, outside CI: every scenario at full size, one after another
(about 17 minutes on a 2-core machine), then ``tests/chaos/RESULTS.md`` with the figures.

    .venv/bin/python -m tests.chaos.soak                # the whole run, writes RESULTS.md
    .venv/bin/python -m tests.chaos.soak --quick        # every scenario small (a minute or two)
    .venv/bin/python -m tests.chaos.soak --only soak --only disk_full --out /tmp/r.md

PostgreSQL: ``$DWF_TEST_POSTGRES`` (default: the local server, as the tests use); the run makes
a database of its own and drops it. Without a server, its scenarios are reported as skipped.
Exits non-zero if any scenario failed; RESULTS.md says which and why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from . import clockjumps, scenarios

HERE = Path(__file__).parent
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"

Scenario = Callable[[Path, str | None, bool], Awaitable[dict[str, Any]]]


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


@contextlib.asynccontextmanager
async def postgres() -> AsyncIterator[str | None]:
    """The URL of a fresh database for this run (dropped after), or None without a server."""
    server = os.environ.get("DWF_TEST_POSTGRES", DEFAULT_PG)
    name = f"dwf_chaos_{secrets.token_hex(4)}"
    try:
        admin = await asyncpg.connect(server, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _log(f"no PostgreSQL server ({exc}): its scenarios are skipped")
        yield None
        return
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        parts = urlsplit(server)
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def _with(url: str, param: str) -> str:
    return f"{url}&{param}" if "?" in url else f"{url}?{param}"


async def sqlite_kills(tmp: Path, pg: str | None, quick: bool) -> dict[str, Any]:
    return await scenarios.process_kills(tmp, kills=3 if quick else 50, log=_log)


async def postgres_kills(tmp: Path, pg: str | None, quick: bool) -> dict[str, Any]:
    if pg is None:
        return {"skipped": "no PostgreSQL server"}
    return await scenarios.process_kills(
        tmp,
        kills=3 if quick else 50,
        connection_kills=2 if quick else 10,
        db=_with(pg, "lease_seconds=2"),
        log=_log,
    )


async def sandbox(tmp: Path, pg: str | None, quick: bool) -> dict[str, Any]:
    return await scenarios.sandbox_faults(
        tmp,
        seconds=15 if quick else 120,
        worker_kills=6 if quick else 60,
        fork_server_kills=2 if quick else 8,
        hostile_rounds=1 if quick else 2,
        log=_log,
    )


async def disk_full(tmp: Path, pg: str | None, quick: bool) -> dict[str, Any]:
    why = scenarios.Tmpfs.available()
    if why is not None:
        return {"skipped": why}
    return await scenarios.disk_full(
        tmp, rounds=1 if quick else 4, full_seconds=2 if quick else 4, log=_log
    )


async def database_locked(tmp: Path, pg: str | None, quick: bool) -> dict[str, Any]:
    return await scenarios.database_locked(tmp, holds=[3] if quick else [3, 8, 12], log=_log)


async def clock(tmp: Path, pg: str | None, quick: bool) -> dict[str, Any]:
    size = {"instances": 30, "jumps": 200} if quick else {"instances": 200, "jumps": 3000}
    runs = [
        await clockjumps.clock_jumps(tmp / "a", **size),
        await clockjumps.clock_jumps(tmp / "b", **size, warm_horizon=5.0),
    ]
    if pg is not None:
        runs.append(await clockjumps.clock_jumps(tmp / "c", **size, storage=pg))
    total: dict[str, Any] = {
        "runs": ", ".join(f"{r['storage'][:10]} h={r['warm horizon (s)']}" for r in runs)
    }
    for key in runs[0]:
        if isinstance(runs[0][key], int) and key != "warm horizon (s)":
            total[key] = sum(r[key] for r in runs)
    return total


async def hostile(tmp: Path, pg: str | None, quick: bool) -> dict[str, Any]:
    return await scenarios.hostile_input(
        tmp,
        admin_examples=5 if quick else 150,
        dispatcher_examples=200 if quick else 5000,
        log=_log,
    )


async def soak(tmp: Path, pg: str | None, quick: bool) -> dict[str, Any]:
    return await scenarios.soak(
        tmp, seconds=30 if quick else 240, warmup=10 if quick else 60, log=_log
    )


async def heap(tmp: Path, pg: str | None, quick: bool) -> dict[str, Any]:
    return await scenarios.python_heap(tmp, instances=3000 if quick else 20000, log=_log)


SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "sqlite_kills": ("dwf dev (SQLite) SIGKILLed under the mixed load", sqlite_kills),
    "postgres_kills": (
        "dwf serve (PostgreSQL) SIGKILLed, its connections terminated",
        postgres_kills,
    ),
    "sandbox": ("workers and fork servers killed; hostile tenants", sandbox),
    "disk_full": ("the disk full and back (tmpfs)", disk_full),
    "database_locked": ("the SQLite database locked by another process", database_locked),
    "clock": ("the wall clock jumping forward and back", clock),
    "hostile": ("hostile input: schemathesis, hypothesis", hostile),
    "soak": ("a sustained mixed load", soak),
    "heap": ("where RSS growth goes: the Python heap, traced, under the same engine", heap),
}


def _commit() -> str:
    if os.environ.get("DWF_CHAOS_COMMIT"):  # a run from a copy of the tree names its commit
        return os.environ["DWF_CHAOS_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=HERE,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        value = json.dumps(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _total(results: dict[str, dict[str, Any]], key: str) -> int:
    return sum(int(r.get(key, 0)) for r in results.values() if isinstance(r.get(key, 0), int))


def render(results: dict[str, dict[str, Any]], durations: dict[str, float], quick: bool) -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    soaked = results.get("soak", {})
    kills = results.get("sqlite_kills", {}).get("kills", 0) + results.get("postgres_kills", {}).get(
        "kills", 0
    )
    failed = [name for name, r in results.items() if "FAILED" in r]
    lines = [
        "# Chaos results" + (" (quick form)" if quick else ""),
        "",
        "Written by `.venv/bin/python -m tests.chaos.soak`"
        + (" --quick" if quick else "")
        + f" at commit {_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"on {os.cpu_count()} cores / {mem} GiB, Python {platform.python_version()}, "
        f"in {sum(durations.values()) / 60:.1f} minutes. What each scenario does and checks: "
        "[README.md](README.md).",
        "",
        "## Summary",
        "",
        "| | |",
        "| --- | --- |",
        f"| scenarios failed | {len(failed)} {failed if failed else ''} |",
        f"| host SIGKILLs survived (SQLite + PostgreSQL) | {kills} |",
        "| PostgreSQL connections terminated | "
        f"{results.get('postgres_kills', {}).get('connections terminated', 0)} |",
        "| workers / fork servers SIGKILLed | "
        f"{results.get('sandbox', {}).get('workers killed', 0)} / "
        f"{results.get('sandbox', {}).get('fork servers killed', 0)} |",
        f"| instances checked | {_total(results, 'instances')} |",
        f"| committed steps checked against the counting server | {_total(results, 'steps')} |",
        "| steps that ran again after their commit (duplicates) | "
        f"{_total(results, 'duplicates')} |",
        f"| instances or events lost | {_total(results, 'lost')} |",
        f"| events delivered (each exactly once, in order) | {_total(results, 'events')} |",
        f"| uncommitted step executions run again after a fault (allowed) | "
        f"{_total(results, 'reruns')} |",
        f"| hostile requests tried | {results.get('hostile', {}).get('hostile requests', 0)} |",
        f"| 5xx answers to them / hangs | {results.get('hostile', {}).get('5xx', 0)} / "
        f"{results.get('hostile', {}).get('hangs', 0)} |",
        f"| host RSS: start / after warm-up / end (MiB) | "
        f"{soaked.get('rss at start (MiB)')} / {soaked.get('rss after warm-up (MiB)')} / "
        f"{soaked.get('rss at end (MiB)')} |",
        f"| host open fds: start / after warm-up / end | {soaked.get('fds at start')} / "
        f"{soaked.get('fds after warm-up')} / {soaked.get('fds at end')} |",
        "",
        "Notes:",
        "",
        "- The 5xx = 0 rule is for hostile input. Under process and storage faults a request "
        "may get a 5xx (a create whose storage connection was killed under it, or while the "
        "disk is full); the figures count them, and the client retries.",
    ]
    if "rss growth after warm-up (MiB)" in soaked:
        lines.append(
            f"- Soak: after the warm-up the host's RSS grew by "
            f"{soaked['rss growth after warm-up (MiB)']} MiB while the database grew from "
            f"{soaked['database after warm-up (MiB)']} to {soaked['database at end (MiB)']} MiB "
            "(file and WAL); the SQLite page cache (cache_size 64 MiB) may hold up to "
            f"{soaked['page cache bound (MiB)']} MiB more of it, the test allows that plus 16 "
            "MiB. Descriptors vary with the HTTP connections and workers in use at the moment "
            "of the sample (medians over 5 s windows)."
        )
    heaped = results.get("heap", {})
    if "Python heap growth (KiB, tracemalloc)" in heaped:
        lines.append(
            f"- Heap: {heaped['instances after the warm-up']} more instances through the same "
            "engine and SQLite storage in one process grew the Python heap by "
            f"{heaped['Python heap growth (KiB, tracemalloc)']} KiB (tracemalloc) while RSS "
            f"grew by {heaped['RSS growth (MiB)']} MiB: what RSS gains is native memory "
            "(SQLite's page cache, up to 64 MiB, and the allocator), not objects we keep."
        )
    lines.append("")
    for name, (title, _) in SCENARIOS.items():
        if name not in results:
            continue
        lines += [
            f"## {title} (`{name}`, {durations.get(name, 0):.0f} s)",
            "",
            "| figure | value |",
            "| --- | --- |",
        ]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in results[name].items()]
        lines.append("")
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every scenario small")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    chosen = args.only or list(SCENARIOS)
    results: dict[str, dict[str, Any]] = {}
    durations: dict[str, float] = {}
    async with postgres() as pg:
        with tempfile.TemporaryDirectory(prefix="dwf-chaos-") as tmp:
            for name in chosen:
                title, run = SCENARIOS[name]
                _log(f"== {name}: {title}")
                started = time.monotonic()
                folder = Path(tmp) / name
                folder.mkdir()
                try:
                    results[name] = await run(folder, pg, args.quick)
                except Exception as exc:
                    traceback.print_exc()
                    results[name] = {"FAILED": f"{type(exc).__name__}: {str(exc)[:2000]}"}
                durations[name] = time.monotonic() - started
                _log(f"== {name}: {json.dumps(results[name])[:1000]}")
    args.out.write_text(render(results, durations, args.quick))
    _log(f"wrote {args.out}")
    return 1 if any("FAILED" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
