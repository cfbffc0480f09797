"""The smallest durable workflow: steps with retries, a sleep and a result.

Run it:  .venv/bin/dwf run examples/hello/workflow.py --params '{"name": "Ada"}'
Stop it (Ctrl-C) during the sleep and run the same command with `--id <the id it printed>`:
it resumes after the steps that already ran.
"""

from workers import WorkflowEntrypoint


class HelloWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("greet")
        async def greet():
            return f"Hello, {event['payload']['name']}!"

        @step.do(config={"retries": {"limit": 3, "delay": "500 milliseconds"}})
        async def shout(greet, ctx):
            # parameters named like an earlier step receive its result; ctx is injected
            if ctx["attempt"] == 1:
                raise RuntimeError("the first attempt fails, the retry succeeds")
            return greet.upper()

        await step.sleep("take a breath", "2 seconds")
        return await shout()
