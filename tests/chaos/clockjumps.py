"""The wall clock jumping forward and back (days, hours, milliseconds) under sleeps, retry
back-offs and event waits with timeouts: no timer fires twice, none is lost, none fires before
its instant. The clock is injected (:class:`MockClock`, moved only by the jumps here); the
engine and its storage are the real ones."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

from dynamic_workflows.core.clock import MockClock
from dynamic_workflows.testing import WorkflowTestEnv
from dynamic_workflows.workers import WorkflowEntrypoint

DAY = 86_400.0
JUMPS = (-2 * DAY, -3600.0, -60.0, -1.0, 0.001, 0.5, 1.0, 30.0, 600.0, 3600.0, DAY, 3 * DAY)


class Record:
    """What ran, at which virtual instant, and the latest instant the clock ever showed."""

    def __init__(self, clock: MockClock) -> None:
        self.clock = clock
        self.runs: Counter[tuple[str, str]] = Counter()
        self.at: dict[tuple[str, str], float] = {}
        self.high_water = clock.now()

    def ran(self, iid: str, name: str) -> float:
        self.runs[(iid, name)] += 1
        self.at[(iid, name)] = self.high_water
        return self.clock.now()


def timers_workflow(record: Record) -> type[WorkflowEntrypoint]:
    class Timers(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            iid = event["instanceId"]
            p = event["payload"]

            @step.do("before")
            async def before() -> float:
                return record.ran(iid, "before")

            await before()
            await step.sleep("nap", p["sleep"])

            @step.do("after-nap")
            async def after_nap() -> float:
                return record.ran(iid, "after-nap")

            await after_nap()

            @step.do(
                "backoff",
                config={"retries": {"limit": 3, "delay": p["delay"], "backoff": "exponential"}},
            )
            async def backoff(ctx: Any) -> int:
                record.ran(iid, f"backoff#{ctx['attempt']}")
                if ctx["attempt"] < 3:
                    raise ValueError("fails twice")
                return int(ctx["attempt"])

            await backoff()
            try:
                got = await step.wait_for_event("wait", "go", timeout=p["timeout"])
                outcome = got["payload"]["token"]
            except Exception:
                outcome = "timed out"

            @step.do("after-wait")
            async def after_wait() -> float:
                return record.ran(iid, "after-wait")

            await after_wait()
            return outcome

    return Timers


async def clock_jumps(
    tmp: Path,
    *,
    instances: int,
    jumps: int,
    storage: str = "sqlite",
    warm_horizon: float = 0.0,
    seed: int = 37,
) -> dict[str, Any]:
    rng = random.Random(seed)
    clock = MockClock(autojump=False)
    record = Record(clock)
    env = WorkflowTestEnv(
        timers_workflow(record),
        storage=storage,
        tmp_path=tmp,
        clock=clock,
        warm_horizon=warm_horizon,
    )
    sent: dict[str, str] = {}
    async with env:
        handles = {}
        moved = Counter[str]()
        for n in range(jumps):
            if len(handles) < instances and rng.random() < 0.5:
                iid = f"clock-{len(handles)}"
                params = {
                    "sleep": rng.choice((1, 30, 3600, 2 * DAY)),
                    "delay": rng.choice((1, 60, 3600)),
                    "timeout": rng.choice(("1 minute", "1 hour", "2 days")),
                }
                handles[iid] = await env.binding.create(id=iid, params=params)
            if handles and rng.random() < 0.6:
                iid = rng.choice(sorted(handles))
                if iid not in sent:
                    sent[iid] = f"token-{n}"
                    await handles[iid].send_event(type="go", payload={"token": sent[iid]})
            delta = rng.choice(JUMPS)
            moved["back" if delta < 0 else "forward"] += 1
            clock.advance(delta)
            record.high_water = max(record.high_water, clock.now())
            await asyncio.sleep(0.002)  # real time: let the engine do what became due
        # Then forward only, until every instance has finished.
        for _ in range(2000):
            statuses = [(await h.status())["status"] for h in handles.values()]
            if all(s in ("complete", "errored") for s in statuses):
                break
            clock.advance(rng.choice((1.0, 3600.0, DAY)))
            record.high_water = max(record.high_water, clock.now())
            await asyncio.sleep(0.002)
        outputs = {iid: await h.status() for iid, h in handles.items()}
        wake_ats: dict[str, float] = {}
        for iid in handles:
            row = await env.storage.get_instance("workflow", "", iid)
            assert row is not None
            for entry in await env.storage.load_journal(row.pk):
                if entry.name == "nap" and entry.wake_at is not None:
                    wake_ats[iid] = entry.wake_at
    problems = []
    for iid, status in outputs.items():
        if status["status"] != "complete":
            problems.append(f"{iid}: {status}")
            continue
        for name in ("before", "after-nap", "after-wait", "backoff#1", "backoff#2", "backoff#3"):
            if record.runs[(iid, name)] != 1:
                problems.append(f"{iid}: {name} ran {record.runs[(iid, name)]} times")
        if iid in wake_ats and record.at[(iid, "after-nap")] < wake_ats[iid]:
            problems.append(f"{iid}: the nap ended before its instant")
        expected = sent.get(iid)
        if status["output"] != "timed out" and status["output"] != expected:
            problems.append(f"{iid}: got {status['output']}, sent {expected}")
    assert not problems, problems
    return {
        "storage": storage,
        "warm horizon (s)": warm_horizon,
        "instances": len(outputs),
        "jumps back": moved["back"],
        "jumps forward": moved["forward"],
        "timers checked (sleeps, back-offs, timeouts)": len(outputs) * 4,
        "events delivered": sum(1 for s in outputs.values() if s["output"] != "timed out"),
        "waits timed out": sum(1 for s in outputs.values() if s["output"] == "timed out"),
        "timers fired twice": 0,
        "timers lost": 0,
    }
