"""The chaos scenarios, sized by their arguments: the tests run them short, ``soak.py`` long.

Each returns its figures (a dict) and raises AssertionError naming what went wrong. Every one
runs real ``dwf`` processes of the chaos project on loopback, with a counting server there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from .hosts import API, Counting, Host, copy_project
from .load import WELL_BEHAVED, Driver, Plan, make_plan, verify
from .stores import PgStore, SQLiteStore, Store

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@contextlib.asynccontextmanager
async def running(
    tmp: Path,
    *,
    db: str | None = None,
    name: str = "host",
    seed: int = 1,
    prepare: Callable[[Path], None] | None = None,
) -> AsyncIterator[tuple[Host, Driver, Counting]]:
    """The chaos project served (SQLite in its folder, or ``db``), a driver and a counting
    server; everything stopped at the end. ``prepare(folder)`` runs before the host starts."""
    counting = Counting()
    folder = copy_project(tmp / name, counting.url)
    if prepare is not None:
        prepare(folder)
    host = Host(folder, db=db, name=name)
    store: Store = SQLiteStore(folder / ".dwf" / "state.sqlite3") if db is None else PgStore(db)
    driver = Driver(host, store, random.Random(seed))
    try:
        host.start()
        await host.wait_ready()
        yield host, driver, counting
    finally:
        host.stop()
        await driver.close()
        counting.close()


class Feed:
    """Creates instances of the well-behaved tenants at ``rate`` per second until stopped, each
    driven by its own task (events, pauses)."""

    def __init__(self, driver: Driver, rate: float, prefix: str, *, limit: int = 10**9) -> None:
        self.driver = driver
        self.rate = rate
        self.prefix = prefix
        self.limit = limit
        self.tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._runner = driver.spawn(self._run())

    async def _run(self) -> None:
        rng = self.driver.rng
        n = 0
        while not self._stop.is_set() and n < self.limit:
            tenant = WELL_BEHAVED[n % len(WELL_BEHAVED)]
            plan = make_plan(rng, tenant, f"{self.prefix}-{n}")
            self.tasks.append(self.driver.spawn(self.driver.drive(plan)))
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), rng.expovariate(self.rate))

    async def finish(self) -> list[Plan]:
        """Stop creating; wait for every plan's requests to be done."""
        self._stop.set()
        await self._runner
        await asyncio.gather(*self.tasks)
        return self.driver.plans


async def _restart(host: Host, log: Log, what: str) -> list[int]:
    """SIGKILL the host (the whole group, or the host process alone) and start it again;
    returns the sandbox processes it left alive (none is expected)."""
    whole = random.random() < 0.7
    below = host.kill9(whole_group=whole)
    host.start()
    left = await asyncio.to_thread(Host.orphans, below, 5.0)
    ready = await host.wait_ready()
    log(f"{what}: SIGKILL {'group' if whole else 'host'}, ready again in {ready:.1f} s")
    return left


async def process_kills(
    tmp: Path,
    *,
    kills: int,
    db: str | None = None,
    connection_kills: int = 0,
    rate: float = 6.0,
    seed: int = 17,
    log: Log = _quiet,
) -> dict[str, Any]:
    """``dwf dev`` (or ``dwf serve --db``) SIGKILLed ``kills`` times at random moments under the
    mixed load (and, on PostgreSQL, every host connection killed ``connection_kills`` times),
    restarted each time. Every instance must end complete, every committed step must be the
    last execution of its key, every event delivered once."""
    rng = random.Random(seed)
    name = "pg" if db else "sqlite"
    async with running(tmp, db=db, name=name, seed=seed) as (host, driver, counting):
        feed = Feed(driver, rate, f"{name}-k")
        faults = ["kill"] * kills + ["connections"] * connection_kills
        rng.shuffle(faults)
        orphans: list[int] = []
        terminated = 0
        started = time.monotonic()
        for i, fault in enumerate(faults):
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            if fault == "kill":
                orphans += await _restart(host, log, f"fault {i + 1}/{len(faults)}")
            else:
                assert isinstance(driver.store, PgStore)
                n = await driver.store.kill_connections()
                terminated += n
                log(f"fault {i + 1}/{len(faults)}: {n} PostgreSQL connections terminated")
        await asyncio.sleep(1.0)
        plans = await feed.finish()
        faulted_for = time.monotonic() - started
        await driver.settle(timeout=120 + len(plans) * 0.1)
        verdict = verify(plans, await driver.store.rows(), counting)
        assert not orphans, f"sandbox processes outlived their host: {orphans}"
        verdict.assert_clean()
        return {
            "backend": "PostgreSQL (dwf serve)" if db else "SQLite (dwf dev)",
            "kills": kills,
            "connection kills": connection_kills,
            "connections terminated": terminated,
            "seconds under faults": round(faulted_for),
            **verdict.figures(),
            "requests": driver.stats["requests"],
            "requests unanswered (host down)": driver.stats["no answer"],
            "5xx while faulted (the client retried)": driver.stats["5xx"],
            "first 5xx of each kind": driver.samples,
            "events stored without an answer": driver.stats["events stored without an answer"],
        }


# -- sandbox faults ------------------------------------------------------------------------------

HOSTILE = {
    "hang": ("sleep", "stubborn"),
    "spin": ("spin", "spin-in-run"),
    "hog": ("hog", "hog-in-run"),
    "rogue": ("garbage-not-msgpack", "garbage-oversize", "garbage-bad-extension"),
}
"""Hostile tenants and the ways their instances misbehave (tenants.py)."""

STOPPED = "timed out|could not be interrupted|CPU limit"
"""A step past its timeout: interrupted in the worker (its timer signal), or, when that did
not answer in time (under a heavy load), its worker killed by the host; or the tenant's CPU
allowance for the run ran out first (two attempts of a spinning step, and their replays)."""

EXPECTED_ERRORS = {
    "sleep": STOPPED,
    "stubborn": "could not be interrupted",
    "spin": STOPPED,
    "spin-in-run": "CPU",
    "hog": "out of memory|memory limit",
    "hog-in-run": "out of memory|memory limit",
    "garbage-not-msgpack": "protocol error",
    "garbage-oversize": "protocol error|too large",
    "garbage-bad-extension": "protocol error",
}
ENVELOPE = {"__dispatcherMetadata": {"tenantId": "alpha"}, "params": {}}
"""Params of an instance the admin API creates for a tenant (the dispatch envelope)."""

CHAOS_DEATH = "killed by SIGKILL|closed its connection"
"""How a hostile instance may end when a random kill took its worker first."""

CONFINED = "|".join(sorted({*EXPECTED_ERRORS.values(), CHAOS_DEATH}))
"""Any of the ways the sandbox stops a hostile instance: which one comes first depends on the
load (each instance is also checked against its own cause, most must match it)."""


async def sandbox_faults(
    tmp: Path,
    *,
    seconds: float,
    worker_kills: int,
    fork_server_kills: int,
    hostile_rounds: int = 1,
    rate: float = 5.0,
    seed: int = 23,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Workers and fork servers SIGKILLed under the mixed load, while hostile tenants hang,
    spin, exhaust memory and write garbage on their sockets: the well-behaved tenants'
    instances all complete (exactly once), every hostile instance ends errored naming its
    cause, and the host never restarts."""
    import re

    rng = random.Random(seed)
    async with running(tmp, name="sandbox", seed=seed) as (host, driver, counting):
        feed = Feed(driver, rate, "sb")
        hostile: list[tuple[Plan, str]] = []
        for r in range(hostile_rounds):
            for tenant, ways in HOSTILE.items():
                for how in ways:
                    plan = Plan(tenant, f"{tenant}-{how}-{r}", {"how": how})
                    hostile.append((plan, how))
        hostile_tasks = [asyncio.create_task(driver.create(plan)) for plan, _ in hostile]
        # A compromised worker answering a request with garbage, twice per round.
        rogue_calls = [
            driver.client.post(
                f"{host.url}/misbehave", headers={"x-tenant-id": "rogue"}, content=how
            )
            for _ in range(hostile_rounds)
            for how in ("not-msgpack", "oversize")
        ]
        rogue = asyncio.gather(*rogue_calls, return_exceptions=True)
        faults = ["worker"] * worker_kills + ["fork server"] * fork_server_kills
        rng.shuffle(faults)
        interval = seconds / max(1, len(faults))
        killed = {"worker": 0, "fork server": 0}
        for fault in faults:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * interval)
            pids = host.workers() if fault == "worker" else host.fork_servers()
            if not pids:
                continue
            pid = rng.choice(pids)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed[fault] += 1
                log(f"SIGKILL {fault} {pid}")
        await asyncio.gather(*hostile_tasks)
        plans = await feed.finish()
        answers = await rogue
        await driver.settle(timeout=120 + len(plans) * 0.1)
        host.assert_never_restarted()
        rows = await driver.store.rows()
        well = [p for p in plans if p.tenant in WELL_BEHAVED]
        verdict = verify(well, rows, counting)
        verdict.assert_clean()
        wrong = []
        own_cause = 0
        for plan, how in hostile:
            row = rows[plan.iid]
            own_cause += bool(re.search(EXPECTED_ERRORS[how], row.error or ""))
            # The random kills hit hostile tenants' workers too: then that is the error.
            if row.status != "errored" or not re.search(CONFINED, row.error or ""):
                wrong.append(f"{plan.key}: {row.status} {row.error}")
        assert not wrong, f"hostile instances that did not fail as expected: {wrong}"
        assert own_cause * 2 >= len(hostile), "most hostile instances died of the chaos"
        rogue_statuses = [
            a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers
        ]
        assert all(s == 500 for s in rogue_statuses), rogue_statuses
        return {
            "seconds": round(seconds),
            "workers killed": killed["worker"],
            "fork servers killed": killed["fork server"],
            "hostile instances (all errored, confined)": len(hostile),
            "hostile instances errored of their own cause": own_cause,
            "rogue requests (garbage frames, worker dropped)": len(rogue_statuses),
            **verdict.figures(),
        }


# -- storage faults -------------------------------------------------------------------------------


class Tmpfs:
    """A small tmpfs mounted at a folder (root only), and a file that fills it."""

    def __init__(self, where: Path, size: str) -> None:
        self.where = where
        self.size = size
        self.filler = where / "filler"

    def mount(self) -> None:
        self.where.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.where)],
            check=True,
            capture_output=True,
        )

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.where)], check=False, capture_output=True)

    def fill(self) -> int:
        """Write the filler until the file system is full; its size."""
        written = 0
        block = b"\0" * 65536
        with open(self.filler, "wb", buffering=0) as f:
            while True:
                try:
                    written += f.write(block) or 0
                except OSError:
                    break
            # The last few bytes, so that not even one page is left.
            with contextlib.suppress(OSError):
                while f.write(b"\0" * 512):
                    written += 512
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    @staticmethod
    def available() -> str | None:
        """Why tmpfs cannot be mounted here, or None."""
        if os.geteuid() != 0:
            return "mounting a tmpfs needs root"
        return None


async def disk_full(
    tmp: Path,
    *,
    rounds: int,
    full_seconds: float,
    rate: float = 5.0,
    size: str = "8m",
    seed: int = 29,
    log: Log = _quiet,
) -> dict[str, Any]:
    """The SQLite database on a small tmpfs, filled by another file under the mixed load, then
    freed, ``rounds`` times: while full, creates fail at once with an error naming the full
    disk; once freed, everything carries on without a restart, nothing stays running, and
    every instance completes exactly once."""
    rng = random.Random(seed)
    fs: Tmpfs | None = None

    def prepare(folder: Path) -> None:
        nonlocal fs
        fs = Tmpfs(folder / ".dwf", size)
        fs.mount()

    refused: list[str] = []
    accepted = 0
    try:
        async with running(tmp, name="diskfull", seed=seed, prepare=prepare) as (
            host,
            driver,
            counting,
        ):
            assert fs is not None
            feed = Feed(driver, rate, "df")
            for r in range(rounds):
                await asyncio.sleep(rng.uniform(1.5, 3.0))
                filled = await asyncio.to_thread(fs.fill)
                log(f"round {r + 1}: disk full ({filled >> 10} KiB of filler)")
                # Creates while full: through the admin API and through a tenant's code.
                deadline = time.monotonic() + full_seconds
                i = 0
                while time.monotonic() < deadline:
                    i += 1
                    started = time.monotonic()
                    resp = await driver.client.post(
                        f"{host.admin_url}{API}/workflows/chaos/instances",
                        json={"id": f"df-full-{r}-{i}", "params": ENVELOPE},
                        headers=host.admin_headers,
                    )
                    took = time.monotonic() - started
                    assert took < 10, f"a create took {took:.1f} s while the disk was full"
                    if resp.status_code == 200:
                        accepted += 1  # it fit in space the database already had
                        await driver.client.delete(
                            f"{host.admin_url}{API}/workflows/chaos/instances/df-full-{r}-{i}",
                            headers=host.admin_headers,
                        )
                    else:
                        body = resp.json()
                        message = body["errors"][0]["message"]
                        assert resp.status_code >= 500, (resp.status_code, body)
                        assert "full" in message, message
                        refused.append(message)
                    await asyncio.sleep(0.2)
                fs.free()
                log(f"round {r + 1}: space back")
            plans = await feed.finish()
            await driver.settle(timeout=120 + len(plans) * 0.1)
            statuses = await driver.store.statuses()
            host.assert_never_restarted()
            assert not statuses.get("running"), statuses
            verdict = verify(plans, await driver.store.rows(), counting)
            verdict.assert_clean()
    finally:
        if fs is not None:
            fs.unmount()
    assert refused, "the disk was never full enough to refuse a create"
    return {
        "rounds": rounds,
        "seconds full per round": full_seconds,
        "creates refused while full (clear error)": len(refused),
        "creates that fit anyway": accepted,
        "error (admin API)": refused[0],
        "error (dispatcher)": next(iter(driver.samples.values()), ""),
        "5xx to the load while full (retried)": driver.stats["5xx"],
        **verdict.figures(),
    }


_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


async def database_locked(
    tmp: Path,
    *,
    holds: list[float],
    rate: float = 5.0,
    seed: int = 31,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Another process holds an exclusive lock on the SQLite database for each of ``holds``
    seconds, under the mixed load: no request fails, everything continues after, exactly
    once."""
    rng = random.Random(seed)
    async with running(tmp, name="locked", seed=seed) as (host, driver, counting):
        feed = Feed(driver, rate, "lk")
        db = host.folder / ".dwf" / "state.sqlite3"
        slowest = 0.0
        for seconds in holds:
            await asyncio.sleep(rng.uniform(1.0, 2.0))
            holder = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _HOLD_LOCK,
                str(db),
                str(seconds),
                stdout=subprocess.PIPE,
            )
            assert holder.stdout is not None
            assert (await holder.stdout.readline()).strip() == b"locked"
            log(f"database locked by pid {holder.pid} for {seconds} s")
            # A request during the hold is answered once the lock is gone.
            started = time.monotonic()
            probe = Plan("alpha", f"lk-probe-{seconds}", {"par": 1, "fail": 1})
            await driver.create(probe)
            slowest = max(slowest, time.monotonic() - started)
            assert await holder.wait() == 0
        plans = await feed.finish()
        await driver.settle(timeout=120 + len(plans) * 0.1)
        host.assert_never_restarted()
        verdict = verify(plans, await driver.store.rows(), counting)
        verdict.assert_clean()
        assert driver.stats["5xx"] == 0, driver.samples
        assert driver.stats["no answer"] == 0
        return {
            "locks held (s)": holds,
            "slowest create during a hold (s)": round(slowest, 1),
            "failed requests": driver.stats["5xx"] + driver.stats["no answer"],
            **verdict.figures(),
        }


# -- hostile input --------------------------------------------------------------------------------

EXAMPLE = Path(__file__).parents[2] / "examples" / "saas"


async def hostile_input(
    tmp: Path, *, admin_examples: int, dispatcher_examples: int, log: Log = _quiet
) -> dict[str, Any]:
    """``dwf dev examples/saas``: the admin API serves its OpenAPI description; schemathesis
    fuzzes every operation from it, hypothesis the example's dispatcher routes; not one 5xx,
    not one request without an answer; the host is alive and well after."""
    import shutil

    from .fuzz import Tally, fuzz_admin_api, fuzz_dispatcher

    folder = tmp / "saas"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", ".dwf"))
    host = Host(folder, name="saas")
    host.start()
    try:
        await host.wait_ready()
        async with httpx.AsyncClient(timeout=10) as client:
            served = await client.get(f"{host.url}{API}/openapi.json")
        assert served.status_code == 200, served.text
        spec = served.json()
        assert spec["openapi"].startswith("3.")
        assert "/workflows" in spec["paths"]
        async with httpx.AsyncClient(base_url=host.url, timeout=10) as client:
            for tenant, body in (("acme", {"sku": "anvil"}), ("globex", {"title": "memo"})):
                for n in range(2):
                    resp = await client.post(
                        f"/?id={tenant}-{n}", json=body, headers={"x-tenant-id": tenant}
                    )
                    assert resp.status_code == 200, resp.text
        admin, dispatcher = Tally(), Tally()
        started = time.monotonic()
        operations = await asyncio.to_thread(
            fuzz_admin_api, f"{host.url}{API}", admin_examples, admin
        )
        log(f"admin API: {admin.requests} requests in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        await asyncio.to_thread(fuzz_dispatcher, host.url, dispatcher_examples, dispatcher)
        log(f"dispatcher: {dispatcher.requests} requests in {time.monotonic() - started:.0f} s")
        failures = admin.failures + dispatcher.failures
        assert not failures, f"{len(failures)} failed: {failures[:10]}"
        assert host.proc is not None
        assert host.proc.poll() is None
        await host.wait_ready(timeout=5)
        return {
            "admin API operations": operations,
            "admin API requests (schemathesis)": admin.requests,
            "dispatcher requests (hypothesis)": dispatcher.requests,
            "hostile requests": admin.requests + dispatcher.requests,
            "5xx": sum(n for s, n in (admin.statuses + dispatcher.statuses).items() if s >= 500),
            "hangs": admin.hangs + dispatcher.hangs,
            "slowest answer (s)": round(max(admin.slowest, dispatcher.slowest), 2),
            "statuses": dict(sorted((admin.statuses + dispatcher.statuses).items())),
        }
    finally:
        host.stop()


# -- soak -----------------------------------------------------------------------------------------


def _db_bytes(folder: Path) -> int:
    state = folder / ".dwf"
    return sum(f.stat().st_size for f in state.glob("state.sqlite3*") if f.suffix != ".lock")


async def soak(
    tmp: Path,
    *,
    seconds: float,
    warmup: float,
    rate: float = 8.0,
    window: float = 5.0,
    seed: int = 41,
    log: Log = _quiet,
) -> dict[str, Any]:
    """A sustained mixed load on ``dwf dev`` for ``seconds``: every instance completes exactly
    once, and after ``warmup`` the host's open descriptors stay flat and its RSS grows by no
    more than its SQLite page cache can (64 MiB at most, and no more than the database grew)
    plus a little slack."""
    samples: list[tuple[float, int, int, int]] = []
    async with running(tmp, name="soak", seed=seed) as (host, driver, counting):
        started = time.monotonic()
        samples.append((0.0, host.rss_kib(), host.open_fds(), _db_bytes(host.folder)))
        feed = Feed(driver, rate, "soak")
        next_log = 60.0
        while (elapsed := time.monotonic() - started) < seconds:
            await asyncio.sleep(1.0)
            samples.append((elapsed, host.rss_kib(), host.open_fds(), _db_bytes(host.folder)))
            if elapsed >= next_log:
                next_log += 60.0
                _, rss, fds, db = samples[-1]
                log(f"soak {elapsed:.0f} s: rss {rss >> 10} MiB, fds {fds}, db {db >> 20} MiB")
        plans = await feed.finish()
        await driver.settle(timeout=120 + len(plans) * 0.1)
        verdict = verify(plans, await driver.store.rows(), counting)
        verdict.assert_clean()
        host.assert_never_restarted()
        settled = (time.monotonic() - started, host.rss_kib(), host.open_fds(), 0)

    def median(lo: float, hi: float, index: int) -> int:
        return int(statistics.median(s[index] for s in samples if lo <= s[0] <= hi))

    end = samples[-1][0]
    warm_rss = median(warmup, warmup + window, 1)
    warm_fds = median(warmup, warmup + window, 2)
    warm_db = median(warmup, warmup + window, 3)
    end_rss = median(end - window, end, 1)
    end_fds = median(end - window, end, 2)
    end_db = median(end - window, end, 3)
    page_cache_kib = min(64 << 10, max(0, end_db - warm_db) >> 10)
    slack_kib = 16 << 10
    growth = end_rss - warm_rss
    assert end_fds - warm_fds <= 8, f"descriptors grew from {warm_fds} to {end_fds}"
    assert growth <= page_cache_kib + slack_kib, (
        f"RSS grew by {growth >> 10} MiB after the warm-up, more than the page cache "
        f"({page_cache_kib >> 10} MiB) and {slack_kib >> 10} MiB of slack: {samples}"
    )
    return {
        "seconds": round(seconds),
        "warm-up (s)": warmup,
        **verdict.figures(),
        "requests": driver.stats["requests"],
        "5xx": driver.stats["5xx"],
        "rss at start (MiB)": round(samples[0][1] / 1024, 1),
        "rss after warm-up (MiB)": round(warm_rss / 1024, 1),
        "rss at end (MiB)": round(end_rss / 1024, 1),
        "rss once idle (MiB)": round(settled[1] / 1024, 1),
        "fds at start": samples[0][2],
        "fds after warm-up": warm_fds,
        "fds at end": end_fds,
        "fds once idle": settled[2],
        "database after warm-up (MiB)": round(warm_db / 2**20, 1),
        "database at end (MiB)": round(end_db / 2**20, 1),
        "rss growth after warm-up (MiB)": round(growth / 1024, 1),
        "page cache bound (MiB)": round(page_cache_kib / 1024, 1),
    }


# -- where the soak's RSS goes ----------------------------------------------------------------


async def python_heap(
    tmp: Path, *, instances: int, warm: int = 2000, log: Log = _quiet
) -> dict[str, Any]:
    """The engine and its SQLite storage in this process, traced by tracemalloc: ``warm``
    instances, then ``instances`` more (two steps and a sleep each). If the Python heap stays
    flat while RSS grows, the growth is SQLite's page cache (native memory, up to 64 MiB),
    not a leak of ours."""
    import gc
    import tracemalloc

    from dynamic_workflows import Engine, SQLiteStorage
    from dynamic_workflows.workers import WorkflowEntrypoint

    class Short(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("a")
            async def a() -> int:
                return 1

            await a()
            await step.sleep("nap", 0.01)

            @step.do("b")
            async def b() -> int:
                return 2

            return await b()

    def rss() -> int:
        from .hosts import rss_kib

        return rss_kib(os.getpid())

    db = tmp / "heap.sqlite3"
    async with Engine(SQLiteStorage(db)) as engine:
        binding = engine.register("short", Short)
        created = 0

        async def run(n: int) -> None:
            nonlocal created
            for start in range(0, n, 100):
                batch = [
                    {"id": f"h{created + i}", "params": {}} for i in range(min(100, n - start))
                ]
                created += len(batch)
                await binding.create_batch(batch)
            deadline = time.monotonic() + 300
            while (await engine.storage.count_instances("short")).get("complete", 0) < created:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

        await run(warm)
        gc.collect()
        tracemalloc.start()
        try:
            rss_before, db_before = rss(), db.stat().st_size
            heap_before = tracemalloc.get_traced_memory()[0]
            await run(instances)
            gc.collect()
            heap_after = tracemalloc.get_traced_memory()[0]
            rss_after, db_after = rss(), db.stat().st_size
        finally:
            tracemalloc.stop()
    heap_growth = heap_after - heap_before
    assert heap_growth < 2 << 20, f"the Python heap grew by {heap_growth} bytes"
    return {
        "instances after the warm-up": instances,
        "Python heap growth (KiB, tracemalloc)": heap_growth >> 10,
        "RSS growth (MiB)": round((rss_after - rss_before) / 1024, 1),
        "database growth (MiB)": round((db_after - db_before) / 2**20, 1),
    }
