"""The platform's dispatcher: routes each request to its tenant's dynamically loaded code.

Tenants are told apart by the ``x-tenant-id`` header. Each tenant's code (``tenants.py``) runs in
its own worker, loaded with ``env.LOADER.get(tenant_id, get_code)``; its ``env.WORKFLOWS`` is the
real Workflow binding wrapped with the tenant's id, so every instance it creates carries that id
and every run of that instance is routed back to the same tenant's code.

Each tenant's controls come from its plan (``PLANS``), over the defaults of ``wrangler.jsonc``'s
``dynamic_workflows.tenants``: a tenant over its create rate gets a 429, and one tenant's flood
of instances only delays that tenant.
"""

from tenants import TENANT_API, TENANT_WORKFLOWS
from workers import Response, WorkerEntrypoint

from dynamic_workflows import (
    BatchError,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    InvalidEventTypeError,
    InvalidInstanceIdError,
    LimitExceededError,
    TenantLimitError,
    WorkflowError,
    create_dynamic_workflow_entrypoint,
    wrap_workflow_binding,
)
from dynamic_workflows.errors import SerializationError

# The platform's plans: decided by the platform (billing, abuse handling), never by tenant code.
# A field left out keeps the wrangler.jsonc default; None removes that cap.
PLANS = {
    "acme": {"weight": 3, "max_running": 50, "create_rate": 50, "create_burst": 200},
    "globex": {"weight": 1, "max_running": 5, "max_live": 1000},
    # initech: the defaults
}


def load_tenant(env, tenant_id):
    """The tenant's worker (loaded once, then cached by the loader under its id)."""

    def get_code():
        return {
            "compatibility_date": "2026-01-01",
            "main_module": "worker.py",
            "modules": {
                "worker.py": TENANT_API,
                "workflow.py": TENANT_WORKFLOWS[tenant_id],
            },
            # The tenant's only way out: a Workflow binding that only sees its own instances.
            "env": {
                "WORKFLOWS": wrap_workflow_binding(
                    {"tenantId": tenant_id}, limits=PLANS.get(tenant_id)
                )
            },
            "global_outbound": None,  # no network for tenant code
        }

    return env.LOADER.get(tenant_id, get_code)


# The class the "tenant-workflows" Workflow runs: it reads the tenant id stored with the
# instance and forwards run(event, step) to that tenant's TenantWorkflow, on every wake-up.
TenantWorkflows = create_dynamic_workflow_entrypoint(
    lambda args: load_tenant(args["env"], args["metadata"]["tenantId"]).get_entrypoint(
        "TenantWorkflow"
    )
)


def refusal(error):
    """The answer to a Workflow binding's refusal that a tenant's code let escape: the client
    asked for something wrong, so a 4xx naming it rather than a 500."""
    if isinstance(error, TenantLimitError):  # over the tenant's plan: slow down
        headers = {}
        if error.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after + 0.5)))
        return Response.json({"error": str(error)}, status=429, headers=headers)
    if isinstance(error, InstanceAlreadyExistsError):
        return Response.json({"error": str(error)}, status=409)
    if isinstance(error, InstanceNotFoundError):
        return Response.json({"error": "instance not found"}, status=404)
    if isinstance(error, InvalidInstanceIdError):
        rule = "1-100 characters of letters, digits, '-' and '_', not starting with '-'"
        return Response.json({"error": f"{error}: an instance id is {rule}"}, status=400)
    if isinstance(error, InvalidEventTypeError | LimitExceededError | BatchError):
        return Response.json({"error": str(error)}, status=400)
    if isinstance(error, SerializationError):  # e.g. an integer past 64 bits in the params
        return Response.json({"error": f"the params cannot be stored: {error}"}, status=400)
    return None  # anything else is the platform's fault: a 500


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        tenant_id = request.headers.get("x-tenant-id")
        if tenant_id is None:
            return Response.json(
                {
                    "error": "send an x-tenant-id header",
                    "tenants": sorted(TENANT_WORKFLOWS),
                    "routes": {
                        "POST /": "start the tenant's workflow; the JSON body is its params",
                        "GET /api/status?instanceId=ID": "an instance's status",
                        "POST /api/approve?instanceId=ID": "send the 'approval' event",
                    },
                },
                status=400,
            )
        if tenant_id not in TENANT_WORKFLOWS:
            return Response.json({"error": f"unknown tenant {tenant_id!r}"}, status=404)
        try:
            return await load_tenant(self.env, tenant_id).get_entrypoint().fetch(request)
        except (WorkflowError, SerializationError) as error:
            # The tenant's code runs in a sandboxed worker; the binding's errors it lets escape
            # come back across the boundary as the same classes, so they are caught as such.
            answer = refusal(error)
            if answer is None:
                raise
            return answer
