"""What the host reports about a tenant's worker: a MemoryError that says what happened, and a
log line for every worker or fork server that dies unexpectedly."""

from __future__ import annotations

from typing import Any

from dynamic_workflows import Engine, MemoryStorage
from dynamic_workflows.sandbox.loader import Loader

from .conftest import worker_code
from .test_workflows import dispatcher, wait_status

HOG = """
    from workers import WorkflowEntrypoint

    class TenantWorkflow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do("hog", config={"retries": {"limit": 0}})
            async def hog():
                return len(bytearray(1 << 30))

            if event["payload"]["in_step"]:
                return await hog()
            return len(bytearray(1 << 30))  # in run() itself, outside any step
"""


async def test_a_memory_error_says_the_worker_ran_out_of_memory(loader: Loader) -> None:
    # Python raises MemoryError with no message: the instance reported {"name": "MemoryError",
    # "message": ""}, in its error and in the step's.
    code: dict[str, Any] = worker_code(HOG, limits={"memory_mb": 64})
    message = "the tenant's worker ran out of memory (limit 64 MiB)"
    async with Engine(MemoryStorage()) as engine:
        binding = engine.register("wf", dispatcher(loader, lambda: code))
        for in_step in (True, False):
            instance = await binding.create(params={"in_step": in_step})
            status = await wait_status(instance, {"complete", "errored"})
            assert status["error"] == {"name": "MemoryError", "message": message}, in_step
            if in_step:
                row = await engine.storage.get_instance("wf", "", instance.id)
                assert row is not None
                (hog,) = await engine.storage.load_journal(row.pk)
                assert hog.error is not None
                assert (hog.error.name, hog.error.message) == ("MemoryError", message)
