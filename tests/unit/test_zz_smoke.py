import time
from dynamic_workflows.testing import WorkflowTestEnv
from dynamic_workflows.workers import WorkflowEntrypoint

class W(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("greet")
        async def greet():
            return f"Hello, {event['payload']['name']}!"

        @step.do(config={"retries": {"limit": 3, "delay": "1 second", "backoff": "constant"}, "timeout": "30 seconds"})
        async def shout(greet, ctx):
            return [greet.upper(), ctx]

        await step.sleep("pause", "2 days")
        return await shout()

async def test_smoke(tmp_path):
    for s in ["memory", "sqlite"]:
        async with WorkflowTestEnv(W, storage=s, tmp_path=tmp_path) as wf:
            t0 = wf.clock.now(); r0=time.monotonic()
            inst = await wf.binding.create(params={"name": "Ada"})
            st = await wf.wait_for(inst)
            print(st, wf.clock.now() - t0, time.monotonic()-r0)
