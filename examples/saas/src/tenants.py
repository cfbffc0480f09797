"""The tenants' code, as a platform would store it: Python source strings, one per tenant.

Every tenant's worker has two modules: ``worker.py`` (the small HTTP API below, the same for
all) and ``workflow.py`` (the tenant's own ``TenantWorkflow``, different for each tenant).
"""

TENANT_API = """
import json
from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint
from workflow import TenantWorkflow  # noqa: F401  (exported: the dispatcher runs it)

ROUTES = {"/": "POST", "/api/status": "GET", "/api/approve": "POST"}


class BadRequest(Exception):
    pass  # answered with a 400 naming the problem


async def json_body(request):
    # The JSON body (None when there is none); a client's mistake is a 400, not a crash.
    try:
        text = await request.text()
        return json.loads(text) if text.strip() else None
    except ValueError as exc:  # not UTF-8, or not JSON
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # nested deeper than the parser goes ("[" * 5000)
        raise BadRequest("the request body is JSON nested too deeply") from None


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        method = ROUTES.get(url.path)
        if method is None:
            return Response.json({"error": "not found"}, status=404)
        if request.method != method:
            return Response.json(
                {"error": f"use {method} {url.path}"}, status=405, headers={"allow": method}
            )
        try:
            return await self.route(request, url.path, parse_qs(url.query))
        except BadRequest as exc:
            return Response.json({"error": str(exc)}, status=400)
        # The binding's refusals (an id that exists or is invalid, no such instance) are left
        # to the dispatcher, which answers them alike for every tenant.

    async def route(self, request, path, query):
        if path == "/":
            params = await json_body(request)
            instance_id = query.get("id", [None])[0]
            instance = await self.env.WORKFLOWS.create(id=instance_id, params=params)
            return Response.json({"id": instance.id})
        instance_id = query.get("instanceId", [""])[0]
        if not instance_id:
            raise BadRequest("instanceId is required")
        instance = await self.env.WORKFLOWS.get(instance_id)
        if path == "/api/status":
            return Response.json({"id": instance.id, **(await instance.status())})
        payload = await json_body(request)
        await instance.send_event(type="approval", payload={} if payload is None else payload)
        return Response.json({"id": instance.id, "sent": "approval"})
"""

# acme sells things: reserve, charge (with retries), wait for the courier, ship.
ACME = """
from workers import WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        order = event["payload"] or {}

        @step.do("reserve")  # a later step's parameter named "reserve" receives its result
        async def reserve():
            return {"sku": order.get("sku", "anvil"), "qty": order.get("qty", 1)}

        @step.do("charge", config={"retries": {"limit": 2, "delay": "1 second"}})
        async def charge(reserve):
            return {"cents": 1999 * reserve["qty"]}

        @step.do("ship")
        async def ship(reserve, charge):
            return f"shipped {reserve['qty']} x {reserve['sku']} for {charge['cents']} cents"

        await reserve()
        charged = await charge()
        await step.sleep("wait for the courier", order.get("courier_delay", "2 seconds"))
        return {"tenant": "acme", "shipment": await ship(), "charged": charged["cents"]}
"""

# globex publishes documents, but only once someone approves them.
GLOBEX = """
from workers import WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        doc = event["payload"] or {}

        @step.do("draft")
        async def draft():
            words = len(doc.get("body", "").split())
            return {"title": doc.get("title", "untitled"), "words": words}

        # Run if the instance fails or is terminated with rollback after the draft was made
        # (Cloudflare's rollback handlers): it gets the draft step's output.
        @draft.rollback
        async def discard(output):
            print(f"discarded the draft {output['title']!r}")

        drafted = await draft()
        approval = await step.wait_for_event("wait for approval", "approval", timeout="1 hour")
        approver = (approval["payload"] or {}).get("by", "someone")

        @step.do("publish")
        async def publish():
            return f"published {drafted['title']!r}, approved by {approver}"

        return {"tenant": "globex", "result": await publish()}
"""

# initech bills its customers: one step per invoice, run concurrently, then a total.
INITECH = """
import asyncio

from workers import WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        amounts = (event["payload"] or {}).get("amounts", [100, 250, 75])

        def invoice(number, amount):
            @step.do(f"invoice {number}")
            async def send():
                return {"invoice": number, "amount": amount}

            return send()

        sent = await asyncio.gather(*(invoice(i + 1, a) for i, a in enumerate(amounts)))

        @step.do("total")
        async def total():
            return sum(s["amount"] for s in sent)

        return {"tenant": "initech", "invoices": len(sent), "total": await total()}
"""

TENANT_WORKFLOWS = {"acme": ACME, "globex": GLOBEX, "initech": INITECH}
