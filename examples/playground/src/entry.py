"""The playground's dispatcher: runs whatever workflow source it is given, in the sandbox.

The source itself travels in the instance's dispatcher metadata, so every run of the instance
(every wake-up, also after a restart of the server) loads exactly the code it was started with.
The loader id is a hash of the source: the same source shares one loaded worker, and a changed
source is a new worker, never a stale one.
"""

import hashlib
import html
from urllib.parse import urlparse

from page import EXAMPLE, PAGE
from workers import Response, WorkerEntrypoint

from dynamic_workflows import (
    LimitExceededError,
    create_dynamic_workflow_entrypoint,
    wrap_workflow_binding,
)


def load_source(env, source):
    key = "play-" + hashlib.sha256(source.encode()).hexdigest()[:24]
    return env.LOADER.get(
        key,
        lambda: {
            "compatibility_date": "2026-01-01",
            "main_module": "workflow.py",
            "modules": {"workflow.py": source},
            "global_outbound": None,  # pasted code gets no network
        },
    )


PlaygroundWorkflow = create_dynamic_workflow_entrypoint(
    lambda args: load_source(args["env"], args["metadata"]["source"]).get_entrypoint(
        "TenantWorkflow"
    )
)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        if request.method == "GET" and path == "/":
            return Response(
                PAGE.replace("{{EXAMPLE}}", html.escape(EXAMPLE)),
                headers={"content-type": "text/html; charset=utf-8"},
            )
        if request.method == "POST" and path == "/api/run":
            try:
                body = await request.json()
            except ValueError as exc:  # a client's malformed JSON is a 400, not a crash
                return Response.json({"error": f"request body: not valid JSON ({exc})"}, status=400)
            if not isinstance(body, dict):
                return Response.json({"error": "request body: must be a JSON object"}, status=400)
            source = body.get("source")
            if not isinstance(source, str) or not source.strip():
                return Response.json({"error": "source: paste a workflow first"}, status=400)
            try:
                compile(source, "workflow.py", "exec")
            except SyntaxError as exc:
                return Response.json(
                    {"error": f"workflow.py, line {exc.lineno}: {exc.msg}"}, status=400
                )
            binding = wrap_workflow_binding({"source": source}, binding_name="PLAYGROUND")
            try:
                instance = await binding.create(params=body.get("params"))
            except LimitExceededError as exc:  # e.g. params over the size limit
                return Response.json({"error": f"params: {exc}"}, status=400)
            return Response.json({"id": instance.id})
        return Response.json({"error": "not found"}, status=404)
