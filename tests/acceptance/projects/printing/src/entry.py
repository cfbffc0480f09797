from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint

from dynamic_workflows.dispatch import create_dynamic_workflow_entrypoint, wrap_workflow_binding

TENANT = """
import logging
from workers import WorkflowEntrypoint

from orders import customer_of


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        print("run begins", event["instanceId"])

        @step.do("first")
        async def first():
            print("first step says hi")
            logging.warning("first step warns")
            return 1

        await first()
        await step.sleep("nap", event["payload"]["nap"])

        @step.do("second", config={"retries": {"limit": 0}})
        async def second():
            print("second step says bye")
            if event["payload"]["fail"]:
                return customer_of({})
            return 2

        return await second()
"""

ORDERS = """
def customer_of(order):
    return order["customer"]
"""


def runner(args):
    code = {"main_module": "tenant.py", "modules": {"tenant.py": TENANT, "orders.py": ORDERS}}
    return args["env"].LOADER.get("t", lambda: code).get_entrypoint("TenantWorkflow")


Printing = create_dynamic_workflow_entrypoint(runner)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        params = {"nap": q.get("nap", "1 second"), "fail": q.get("fail") == "1"}
        instance = await wrap_workflow_binding({"tenant": "t"}).create(id=q["id"], params=params)
        return Response.json({"id": instance.id})
