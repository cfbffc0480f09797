"""The chaos tests' dispatcher: routes each request to its tenant's sandboxed code.

The tenant is the ``x-tenant-id`` header; its code (``tenants.py``) runs in a worker of its own,
loaded with ``env.LOADER.get(tenant, get_code)``, with a wrapped Workflow binding and its global
``fetch`` going through the host (to the tests' counting server on loopback). Routes, all with
``?id=ID``: ``POST /create`` (body: params), ``GET /status``, ``POST /event`` (body: payload),
``POST /pause``, ``POST /resume``; ``GET /ping`` answers without touching a tenant.
"""

from tenants import API, TENANTS
from workers import Response, WorkerEntrypoint

from dynamic_workflows import (
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    InvalidEventTypeError,
    InvalidInstanceIdError,
    LimitExceededError,
    WorkflowError,
    create_dynamic_workflow_entrypoint,
    wrap_workflow_binding,
)


def load_tenant(env, tenant):
    source, limits = TENANTS[tenant]

    def get_code():
        code = {
            "compatibility_date": "2026-01-01",
            "main_module": "worker.py",
            "modules": {"worker.py": API, "workflow.py": source},
            "env": {
                "WORKFLOWS": wrap_workflow_binding({"tenantId": tenant}),
                "COUNTER_URL": env.COUNTER_URL,
                "TENANT": tenant,
            },
        }
        if limits:
            code["limits"] = limits
        return code

    return env.LOADER.get(tenant, get_code)


TenantWorkflows = create_dynamic_workflow_entrypoint(
    lambda args: load_tenant(args["env"], args["metadata"]["tenantId"]).get_entrypoint(
        "TenantWorkflow"
    )
)


def refusal(error):
    if isinstance(error, InstanceAlreadyExistsError):
        return Response.json({"error": str(error)}, status=409)
    if isinstance(error, InstanceNotFoundError):
        return Response.json({"error": "instance not found"}, status=404)
    if isinstance(error, InvalidInstanceIdError | InvalidEventTypeError | LimitExceededError):
        return Response.json({"error": str(error)}, status=400)
    if isinstance(error, WorkflowError):  # e.g. pausing a finished instance
        return Response.json({"error": str(error)}, status=409)
    return None


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/ping"):
            return Response.json({"ok": True})
        tenant = request.headers.get("x-tenant-id")
        if tenant not in TENANTS:
            return Response.json({"error": f"unknown tenant {tenant!r}"}, status=404)
        try:
            return await load_tenant(self.env, tenant).get_entrypoint().fetch(request)
        except WorkflowError as error:
            answer = refusal(error)
            if answer is None:
                raise
            return answer
