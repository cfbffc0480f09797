"""Several nodes, one database: every step reports each execution to the test's counting
server and returns the count it got back, so the test can tell whether a committed step ever
ran again (its stored result would then not be the last count of its key)."""

import asyncio
from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint, fetch


async def hit(env, key):
    resp = await fetch(f"{env.COUNTER_URL}/hit?key={key}", method="POST")
    return int(await resp.text())


class Mixed(WorkflowEntrypoint):
    async def run(self, event, step):
        iid = event["instanceId"]
        p = event["payload"] or {}
        env = self.env

        @step.do("first")
        async def first():
            await asyncio.sleep(p.get("work", 0))
            return await hit(env, f"{iid}:first")

        out = {"first": await first()}
        if p.get("sleep"):
            await step.sleep("nap", p["sleep"])

        @step.do("flaky", config={"retries": {"limit": 3, "delay": 100, "backoff": "constant"}})
        async def flaky(ctx):
            n = await hit(env, f"{iid}:flaky:{ctx['attempt']}")
            if ctx["attempt"] == 1:
                raise ValueError("the first attempt always fails")
            await asyncio.sleep(p.get("work", 0))
            return [ctx["attempt"], n]

        out["flaky"] = await flaky()
        if p.get("wait"):
            try:
                got = await step.wait_for_event(
                    "approval", "go", timeout=p.get("timeout", "2 minutes")
                )
                out["event"] = got["payload"]
            except Exception:

                @step.do("timed-out")
                async def timed_out():
                    return await hit(env, f"{iid}:timed-out")

                out["timed_out"] = await timed_out()

        @step.do("last")
        async def last():
            return await hit(env, f"{iid}:last")

        out["last"] = await last()
        return out


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        iid = parse_qs(url.query).get("id", [None])[0]
        if url.path == "/create":
            instance = await self.env.MIXED.create(id=iid, params=await request.json())
            return Response.json({"id": instance.id})
        instance = await self.env.MIXED.get(iid)
        if url.path == "/event":
            await instance.send_event(type="go", payload=await request.json())
        elif url.path == "/pause":
            await instance.pause()
        elif url.path == "/resume":
            await instance.resume()
        return Response.json({"id": iid, **(await instance.status())})
