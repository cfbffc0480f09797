import asyncio
from urllib.parse import urlparse

from workers import Response, WorkerEntrypoint

from dynamic_workflows.dispatch import create_dynamic_workflow_entrypoint, wrap_workflow_binding

TENANT = """
from workers import WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("echo")
        async def echo():
            return {"got": event["payload"]}

        return await echo()
"""


def runner(args):
    code = {"main_module": "tenant.py", "modules": {"tenant.py": TENANT}}
    return args["env"].LOADER.get("tenant", lambda: code).get_entrypoint("TenantWorkflow")


Dynamic = create_dynamic_workflow_entrypoint(runner)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        if path == "/raw":  # wrong: the raw binding stores no dispatcher metadata
            instance = await self.env.WORKFLOWS.create(params={"x": 1})
            return Response.json({"id": instance.id})
        if path == "/wrapped":
            instance = await wrap_workflow_binding({"tenant": "t"}).create(params={"x": 2})
            return Response.json({"id": instance.id})
        if path == "/vars":
            return Response.json({"greeting": self.env.GREETING})
        if path == "/slow":
            await asyncio.sleep(1.5)
            return Response("finished")
        if path == "/boom":
            raise RuntimeError("secret detail")
        return Response("ok")
