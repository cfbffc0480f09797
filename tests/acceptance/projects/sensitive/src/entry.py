from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class Vault(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("fetch key", config={"sensitive": "output"})
        async def fetch_key():
            return {"api_key": "sk-live-0123456789"}

        @step.do("label")
        async def label():
            return "public label"

        key = await fetch_key()
        await label()
        # Hibernates until the event: what follows replays "fetch key" from storage.
        go = await step.wait_for_event("go", "go", timeout="1 hour")

        @step.do("sign")
        async def sign():
            return key["api_key"][-4:] + "/" + go["payload"]

        return await sign()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")
