"""``dwf dev examples/playground``: the page, a pasted workflow run in the sandbox, its steps."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from host_support import API, ROOT, Server, copy_project

PLAYGROUND = ROOT / "examples" / "playground"


def test_paste_run_and_watch(tmp_path: Path) -> None:
    folder = copy_project(PLAYGROUND, tmp_path / "playground")
    server = Server("dev", folder, "--no-reload")
    try:
        server.wait_ready()
        page = httpx.get(server.url + "/")
        assert page.status_code == 200
        assert "<textarea" in page.text
        assert "class TenantWorkflow(WorkflowEntrypoint)" in page.text  # the example, escaped
        source = """
from workers import WorkflowEntrypoint

class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("double")
        async def double():
            return event["payload"]["n"] * 2

        await double()
        go = await step.wait_for_event("wait for go", "go", timeout="1 minute")
        return {"double": await double(), "go": go["payload"]}
"""
        run = httpx.post(server.url + "/api/run", json={"source": source, "params": {"n": 21}})
        assert run.status_code == 200, run.text
        id = run.json()["id"]
        url = f"{server.url}{API}/workflows/playground/instances/{id}"

        def details() -> dict[str, object]:
            result: dict[str, object] = httpx.get(url).json()["result"]
            return result

        deadline = time.monotonic() + 20
        while details()["status"] != "waiting" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert details()["status"] == "waiting"
        assert httpx.post(url + "/events/go", json="now").status_code == 200
        while details()["status"] != "complete" and time.monotonic() < deadline:
            time.sleep(0.05)
        done = details()
        # double() called twice is two steps (double #1 and #2): the journal shows both
        assert done["output"] == {"double": 42, "go": "now"}
        steps = done["steps"]
        assert isinstance(steps, list)
        assert [(s["name"], s["count"]) for s in steps] == [
            ("double", 1),
            ("wait for go", 1),
            ("double", 2),
        ]
        bad = httpx.post(server.url + "/api/run", json={"source": "def broken(:\n"})
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("workflow.py, line 1:")
        # A client's malformed JSON or a body that is not an object: a 400, not a 500.
        for content, error in ((b"{nope", "request body: not valid JSON ("), (b"[1]", "object")):
            wrong = httpx.post(server.url + "/api/run", content=content)
            assert wrong.status_code == 400, wrong.text
            assert error in wrong.json()["error"]
    finally:
        server.stop()
