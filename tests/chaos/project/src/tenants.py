"""The tenants' code: an HTTP API over the tenant's Workflow binding, and a workflow.

Well-behaved tenants (``alpha``, ``beta``, ``gamma``) run ``MIXED``: every step reports each
execution to the counting server (``POST COUNTER_URL/hit?key=K`` answers K's new count) and
returns the count it got, so a committed result is the last count of its key exactly when the
step never ran again after its commit. Steps in parallel, a sleep, a step whose first attempts
fail, event waits (the tokens received, in order, are in the output), a wait that times out.

Hostile tenants break things in their own worker: ``hang`` (a step that sleeps or ignores its
timeout), ``spin`` (CPU in a step, or in ``run`` outside any step), ``hog`` (memory),
``rogue`` (writes garbage frames on its own socket to the host).
"""

API = """
import json
from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint
from workflow import TenantWorkflow, misbehave  # noqa: F401  (exported: the dispatcher runs it)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        iid = parse_qs(url.query).get("id", [None])[0]
        route = url.path
        if route == "/misbehave":
            return await misbehave(request)
        if route == "/create":
            text = await request.text()
            params = json.loads(text) if text.strip() else None
            instance = await self.env.WORKFLOWS.create(id=iid, params=params)
            return Response.json({"id": instance.id})
        instance = await self.env.WORKFLOWS.get(iid)
        if route == "/event":
            await instance.send_event(type="go", payload=json.loads(await request.text()))
        elif route == "/pause":
            await instance.pause()
        elif route == "/resume":
            await instance.resume()
        elif route != "/status":
            return Response.json({"error": "not found"}, status=404)
        return Response.json({"id": iid, **(await instance.status())})
"""

HIT = """
from workers import Response, fetch


async def hit(env, key):
    resp = await fetch(f"{env.COUNTER_URL}/hit?key={key}", method="POST")
    if resp.status != 200:
        raise RuntimeError(f"the counting server answered {resp.status}")
    return int(await resp.text())
"""

MIXED = (
    HIT
    + """
import asyncio

from workers import WorkflowEntrypoint

RETRY = {"retries": {"limit": 30, "delay": "100 milliseconds", "backoff": "constant"}}


async def misbehave(request):
    return Response.json({"error": "a well-behaved tenant"}, status=400)


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        env = self.env
        p = event["payload"] or {}
        key = f"{env.TENANT}/{event['instanceId']}"
        out = {}

        @step.do("first", config=RETRY)
        async def first():
            return await hit(env, f"{key}/first")

        out["first"] = await first()

        def parallel(i):
            @step.do(f"par-{i}", config=RETRY)
            async def body():
                await asyncio.sleep(p.get("work", 0))
                return await hit(env, f"{key}/par-{i}")

            return body()

        out["par"] = list(await asyncio.gather(*(parallel(i) for i in range(p.get("par", 2)))))
        if p.get("sleep"):
            await step.sleep("nap", p["sleep"])

        @step.do("flaky", config=RETRY)
        async def flaky(ctx):
            n = await hit(env, f"{key}/flaky/{ctx['attempt']}")
            if ctx["attempt"] < p.get("fail", 2):
                raise ValueError("this attempt fails on purpose")
            return [ctx["attempt"], n]

        out["flaky"] = await flaky()
        tokens = []
        for k in range(p.get("events", 0)):
            got = await step.wait_for_event(f"event-{k}", "go", timeout="1 hour")
            tokens.append(got["payload"]["token"])
        out["events"] = tokens
        if p.get("timeout"):
            try:
                await step.wait_for_event("nobody", "never", timeout=p["timeout"])
                out["timed_out"] = None
            except Exception:

                @step.do("timed-out", config=RETRY)
                async def timed_out():
                    return await hit(env, f"{key}/timed-out")

                out["timed_out"] = await timed_out()

        @step.do("last", config=RETRY)
        async def last():
            return await hit(env, f"{key}/last")

        out["last"] = await last()
        return out
"""
)

HOSTILE = '''
import os
import socket
import stat
import time

from workers import Response, WorkflowEntrypoint

ONCE = {"retries": {"limit": 1, "delay": "10 milliseconds"}, "timeout": "1 second"}


def own_socket():
    """The worker's socket to the host: the only socket it has."""
    for fd in range(3, 256):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass
    raise RuntimeError("no socket")


def garbage(how):
    fd = own_socket()
    if how == "oversize":
        os.write(fd, (2**31).to_bytes(4, "big") + b"x" * 64)
    elif how == "not-msgpack":
        os.write(fd, (8).to_bytes(4, "big") + bytes([0xC1] * 8))
    elif how == "bad-extension":
        # msgpack [ "Fetch", 1, 1, ext(2, b"\\x91\\x01") ]: a Request of the wrong shape
        body = bytes([0x94, 0xA5]) + b"Fetch" + bytes([0x01, 0x01, 0xD5, 0x02, 0x91, 0x01])
        os.write(fd, len(body).to_bytes(4, "big") + body)
    else:
        raise ValueError(how)
    time.sleep(5)  # whatever the host does, it does while this worker is stuck here


async def misbehave(request):
    how = (await request.text()) or "not-msgpack"
    garbage(how)
    return Response.json({"survived": how})


def eat_memory():
    hoard = []
    while True:
        hoard.append(bytearray(8 << 20))


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        how = (event["payload"] or {}).get("how", "")
        if how == "spin-in-run":
            while True:
                pass
        if how == "hog-in-run":
            eat_memory()

        @step.do("misbehave", config=ONCE)
        async def misbehave_step():
            if how == "sleep":
                time.sleep(3600)
            elif how == "stubborn":
                deadline = time.monotonic() + 3600
                while time.monotonic() < deadline:
                    try:
                        time.sleep(3600)
                    except BaseException:
                        pass
            elif how == "spin":
                while True:
                    pass
            elif how == "hog":
                eat_memory()
            elif how.startswith("garbage-"):
                garbage(how[len("garbage-") :])
            return "survived"

        return await misbehave_step()
'''

HOG_LIMITS = {"memory_mb": 64, "cpu_ms": 3000, "wall_ms": 20000}

TENANTS = {
    "alpha": (MIXED, None),
    "beta": (MIXED, None),
    "gamma": (MIXED, None),
    "hang": (HOSTILE, {"wall_ms": 20000}),
    "spin": (HOSTILE, {"cpu_ms": 3000, "wall_ms": 20000}),
    "hog": (HOSTILE, HOG_LIMITS),
    "rogue": (HOSTILE, {"wall_ms": 20000}),
}
"""tenant -> (its worker's code, its limits or None)."""
