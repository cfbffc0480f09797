"""Several nodes, one database: the 3-step workflow of the throughput benchmark, and an HTTP
front that creates a batch of its instances per request (POST /create?n=K, K <= 100)."""

from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class ThreeSteps(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("a")
        async def a():
            return 1

        @step.do("b")
        async def b(a):
            return a + 1

        @step.do("c")
        async def c(b):
            return b + 1

        return await c()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        if request.method != "POST" or url.path != "/create":
            return Response.json({"ready": True})
        n = int(parse_qs(url.query).get("n", ["1"])[0])
        result = await self.env.THREE.create_batch({"count": n, "params": {}})
        return Response.json({"created": len(result["created"]), "errors": result["errors"]})
