"""The tenants' code, as a platform would store it: Python source strings, one per tenant.

Every tenant's worker has two modules: ``worker.py`` (the small HTTP API below, the same for
all) and ``workflow.py`` (the tenant's own ``TenantWorkflow``, different for each tenant).
"""

TENANT_API = """
from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint
from workflow import TenantWorkflow  # noqa: F401  (exported: the dispatcher runs it)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if request.method == "POST" and url.path == "/":
            params = await request.json()
            instance = await self.env.WORKFLOWS.create(id=query.get("id"), params=params)
            return Response.json({"id": instance.id})
        if url.path in ("/api/status", "/api/approve"):
            instance_id = query.get("instanceId")
            if not instance_id:
                return Response.json({"error": "instanceId is required"}, status=400)
            try:
                instance = await self.env.WORKFLOWS.get(instance_id)
            except Exception:
                return Response.json({"error": "instance not found"}, status=404)
            if request.method == "GET" and url.path == "/api/status":
                return Response.json({"id": instance.id, **(await instance.status())})
            if request.method == "POST" and url.path == "/api/approve":
                payload = await request.json() if await request.text() else {}
                await instance.send_event(type="approval", payload=payload)
                return Response.json({"id": instance.id, "sent": "approval"})
        return Response.json({"error": "not found"}, status=404)
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
