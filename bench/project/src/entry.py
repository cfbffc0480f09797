"""A dispatcher for the creation benchmark: POST / creates an instance of the tenant's workflow
through the wrapped binding; the workflow itself runs in the tenant's sandboxed worker."""

from workers import Response, WorkerEntrypoint

from dynamic_workflows.dispatch import (
    create_dynamic_workflow_entrypoint,
    wrap_workflow_binding,
)

TENANT = """
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("only")
        async def only():
            return event["payload"]

        return await only()
"""


def tenant(env, tenant_id):
    return env.LOADER.get(
        tenant_id, lambda: {"main_module": "workflow.py", "modules": {"workflow.py": TENANT}}
    )


BenchWorkflows = create_dynamic_workflow_entrypoint(
    lambda args: tenant(args["env"], args["metadata"]["tenantId"]).get_entrypoint("TenantWorkflow")
)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        tenant_id = request.headers.get("x-tenant-id") or "bench"
        binding = wrap_workflow_binding({"tenantId": tenant_id})
        instance = await binding.create(params=await request.json())
        return Response.json({"id": instance.id})
