"""A mixed load on the chaos project, through its dispatcher, and the checks of its outcome.

Each instance gets a :class:`Plan`: how many parallel steps, how many failing attempts, a sleep
(near, kept warm, or far, hibernated), events to wait for, a wait that times out; the driver
creates it, sends its events one by one (each with a unique token), pauses and resumes it at
random, and retries whatever failed while the host was down. An event whose request failed may
have been stored all the same: the driver looks in the database before it sends another.

:func:`verify` reads the database and the counting server and says, per instance, what went
wrong: not complete, a committed step that ran again after its commit (its stored result is not
the last count of its key), an event lost or delivered twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from .hosts import API, WORKFLOW, Counting, Host
from .stores import Row, Store

WELL_BEHAVED = ("alpha", "beta", "gamma")
FINISHED = ("complete", "errored", "terminated")


@dataclass
class Plan:
    """One instance of the mixed workflow and what the driver did to it."""

    tenant: str
    iid: str
    params: dict[str, Any]
    tokens: list[str] = field(default_factory=list)
    """Its events' tokens that were stored, in the order sent."""
    pauses: int = 0

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.iid}"


def make_plan(rng: random.Random, tenant: str, iid: str) -> Plan:
    params: dict[str, Any] = {
        "par": rng.randint(1, 3),
        "fail": rng.choice((1, 2, 2, 3)),
        "work": rng.choice((0, 0, 0.02, 0.2)),
    }
    r = rng.random()
    if r < 0.35:
        params["sleep"] = rng.choice((50, 400, 1500))  # near: the run stays warm
    elif r < 0.45:
        params["sleep"] = "6 seconds"  # past the warm horizon: the instance hibernates
    if rng.random() < 0.5:
        params["events"] = rng.randint(1, 3)
    if rng.random() < 0.2:
        params["timeout"] = "1 second"
    return Plan(tenant, iid, params)


class Driver:
    """Sends a plan's requests to ``host`` (whichever process is serving at the moment)."""

    def __init__(
        self,
        host: Host,
        store: Store,
        rng: random.Random,
        *,
        concurrency: int = 12,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.store = store
        self.rng = rng
        self.client = httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=concurrency)
        )
        self.sem = asyncio.Semaphore(concurrency)
        self.stats: Counter[str] = Counter()
        self.plans: list[Plan] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.samples: dict[str, str] = {}
        """The first answer of each kind of 5xx (route and status)."""

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A task of this driver's (cancelled by :meth:`close` if still running)."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()

    async def call(
        self, method: str, route: str, plan: Plan, body: Any = None
    ) -> httpx.Response | None:
        """One request; None when it got no answer (the host is down or died under it)."""
        async with self.sem:
            self.stats["requests"] += 1
            try:
                resp = await self.client.request(
                    method,
                    f"{self.host.url}/{route}?id={plan.iid}",
                    headers={"x-tenant-id": plan.tenant},
                    content=None if body is None else json.dumps(body),
                )
            except httpx.TransportError:
                self.stats["no answer"] += 1
                return None
        if resp.status_code >= 500:
            self.stats["5xx"] += 1
            self.samples.setdefault(f"{route} {resp.status_code}", resp.text[:300])
        return resp

    async def create(self, plan: Plan) -> None:
        self.plans.append(plan)
        while True:
            resp = await self.call("POST", "create", plan, plan.params)
            # 409: an earlier attempt whose answer was lost did create it
            if resp is not None and resp.status_code in (200, 409):
                return
            if resp is not None and resp.status_code < 500:
                raise AssertionError(f"create {plan.key}: {resp.status_code} {resp.text}")
            await asyncio.sleep(0.2)

    async def send_event(self, plan: Plan, k: int) -> None:
        for attempt in range(1, 1000):
            token = f"{plan.iid}.{k}.{attempt}"
            resp = await self.call("POST", "event", plan, {"token": token})
            if resp is not None and resp.status_code == 200:
                plan.tokens.append(token)
                return
            if resp is not None and resp.status_code < 500:
                raise AssertionError(f"event {plan.key}: {resp.status_code} {resp.text}")
            # No answer, or a failure after which it may still have been stored: look.
            await asyncio.sleep(0.5)
            if await self.store.has_event(token):
                self.stats["events stored without an answer"] += 1
                plan.tokens.append(token)
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"event {plan.key}: never sent")

    async def control(self, plan: Plan, action: str) -> bool:
        """Pause or resume; False when refused (finished, not paused) or not answered."""
        resp = await self.call("POST", action, plan)
        return resp is not None and resp.status_code == 200

    async def drive(self, plan: Plan, *, pause_chance: float = 0.25) -> None:
        """Create the instance, then its events and a pause now and then."""
        rng = self.rng
        await self.create(plan)
        for k in range(plan.params.get("events", 0)):
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            if rng.random() < pause_chance:
                await self.pause_for(plan, rng.uniform(0.1, 1.0))
            await self.send_event(plan, k)
        if not plan.params.get("events") and rng.random() < pause_chance:
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            await self.pause_for(plan, rng.uniform(0.1, 1.0))

    async def pause_for(self, plan: Plan, seconds: float) -> None:
        if await self.control(plan, "pause"):
            plan.pauses += 1
            self.stats["pauses"] += 1
        await asyncio.sleep(seconds)
        await self.control(plan, "resume")

    async def status(self, plan: Plan) -> str | None:
        resp = await self.call("GET", "status", plan)
        if resp is None or resp.status_code != 200:
            return None
        return str(resp.json()["status"])

    async def counts(self) -> dict[str, int] | None:
        try:
            resp = await self.client.get(
                f"{self.host.admin_url}{API}/workflows/{WORKFLOW}",
                headers=self.host.admin_headers,
            )
        except httpx.TransportError:
            return None
        if resp.status_code != 200:
            return None
        return {k: v for k, v in resp.json()["result"]["instances"].items() if v}

    async def settle(self, timeout: float) -> None:
        """Wait until every instance in the database has finished (the plans' and any other a
        scenario made), resuming any left paused (a resume lost with a killed host)."""
        deadline = time.monotonic() + timeout
        last_resume = time.monotonic()
        while time.monotonic() < deadline:
            counts = await self.store.statuses()
            done = sum(counts.get(s, 0) for s in FINISHED)
            if done >= max(len(self.plans), sum(counts.values())):
                return
            if counts.get("paused") and time.monotonic() - last_resume > 2:
                last_resume = time.monotonic()
                rows = await self.store.rows()
                for plan in self.plans:
                    row = rows.get(plan.iid)
                    if row is not None and row.status == "paused":
                        await self.control(plan, "resume")
            await asyncio.sleep(0.25)
        rows = await self.store.rows()
        stuck = {iid: row.status for iid, row in rows.items() if row.status not in FINISHED}
        raise AssertionError(f"not finished after {timeout} s: {stuck}\n{self.host.log()}")


@dataclass
class Verdict:
    """What :func:`verify` found."""

    instances: int = 0
    steps: int = 0
    """Committed step results checked against the counting server."""
    reruns: int = 0
    """Step executions that were not committed and ran again (a kill between the step's work
    and its commit): allowed, and a sign that the faults hit steps in flight."""
    duplicates: list[str] = field(default_factory=list)
    """Committed steps that ran again after their commit."""
    lost: list[str] = field(default_factory=list)
    """Instances not complete, events lost or delivered twice."""
    events: int = 0
    pauses: int = 0

    def figures(self) -> dict[str, int]:
        return {
            "instances": self.instances,
            "steps": self.steps,
            "reruns": self.reruns,
            "duplicates": len(self.duplicates),
            "lost": len(self.lost),
            "events": self.events,
            "pauses": self.pauses,
        }

    def assert_clean(self) -> None:
        assert not self.duplicates, f"committed steps ran again: {self.duplicates[:20]}"
        assert not self.lost, f"lost: {self.lost[:20]}"


def verify(plans: list[Plan], rows: dict[str, Row], counting: Counting) -> Verdict:
    """Every plan's instance complete, its committed steps the last execution of their keys,
    its events delivered once each, in order."""
    verdict = Verdict()
    counts = counting.counts
    for plan in plans:
        verdict.instances += 1
        verdict.pauses += plan.pauses
        row = rows.get(plan.iid)
        if row is None or row.status != "complete":
            verdict.lost.append(f"{plan.key}: {row and (row.status, row.error)}")
            continue
        out = row.output
        p = plan.params
        committed = {f"{plan.key}/first": out["first"], f"{plan.key}/last": out["last"]}
        for i, n in enumerate(out["par"]):
            committed[f"{plan.key}/par-{i}"] = n
        attempt, n = out["flaky"]
        committed[f"{plan.key}/flaky/{attempt}"] = n
        if attempt < p["fail"]:
            verdict.lost.append(f"{plan.key}: flaky committed at attempt {attempt}")
        if p.get("timeout"):
            committed[f"{plan.key}/timed-out"] = out["timed_out"]
        if len(out["par"]) != p["par"]:
            verdict.lost.append(f"{plan.key}: {len(out['par'])} parallel steps of {p['par']}")
        for key, value in committed.items():
            verdict.steps += 1
            if value != counts[key]:
                verdict.duplicates.append(f"{key}: committed {value}, executed {counts[key]}x")
            verdict.reruns += max(0, counts[key] - 1)
        # Events: every stored one consumed once, in order; none the driver sent missing.
        stored = [token for token, _ in row.events]
        received = list(out["events"])
        verdict.events += len(received)
        if received != plan.tokens:
            verdict.lost.append(f"{plan.key}: received {received}, sent {plan.tokens}")
        if stored != plan.tokens or not all(consumed for _, consumed in row.events):
            verdict.lost.append(f"{plan.key}: stored {row.events}, sent {plan.tokens}")
    return verdict
