"""A ``sensitive: "output"`` step through the admin API (what wrangler's and ``dwf``'s
``instances describe`` and the dashboard read) and ``dwf instances describe``'s printer: the
output is ``"[REDACTED]"``, Cloudflare's form, while the run still gets the real value. (The
commands themselves, against ``dwf dev``: tests/acceptance/test_sensitive_cli.py.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from unit_support import DevClientFactory

from dynamic_workflows.host.client import Printer

API = "/cdn-cgi/local/explorer/api"

CONFIG = """
{
  "name": "sensitive",
  "main": "src/entry.py",
  "workflows": [{"name": "vault", "binding": "VAULT", "class_name": "Vault"}],
}
"""

ENTRY = """
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
        # Hibernates until the event: what follows is a replay from storage.
        go = await step.wait_for_event("go", "go", timeout="1 hour")

        @step.do("sign", config={"sensitive": "output"})
        async def sign():
            return key["api_key"][-4:] + "/" + go["payload"]

        @step.do("doomed", config={"sensitive": "output", "retries": {"limit": 0, "delay": 0}})
        async def doomed():
            raise ValueError("error text is never redacted")

        try:
            await doomed()
        except Exception:
            pass
        return {"signed": await sign(), "key": key}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")
"""

SECRET = "sk-live-0123456789"


@pytest.fixture
async def client(dev_client: DevClientFactory, tmp_path: Path) -> httpx.AsyncClient:
    # (SQLite: the flag goes through a SQL backend's steps table, and back.)
    return await dev_client(CONFIG, ENTRY, storage_url=f"sqlite://{tmp_path / 'state.sqlite3'}")


async def details_when(client: httpx.AsyncClient, id: str, status: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(500):
        response = await client.get(f"{API}/workflows/vault/instances/{id}")
        assert response.status_code == 200, response.text
        body = response.json()["result"]
        if body["status"] == status:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"{id} never reached {status}: {body}")


async def test_the_api_redacts_the_output_and_the_run_still_gets_the_value(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    made = await client.post(API + "/workflows/vault/instances", json={"id": "v1"})
    assert made.status_code == 200, made.text
    waiting = await details_when(client, "v1", "waiting")
    steps = {s["name"]: s for s in waiting["steps"]}
    assert steps["fetch key"]["output"] == "[REDACTED]"
    assert steps["fetch key"]["sensitive"] == "output"
    assert steps["fetch key"]["success"] is True
    assert steps["label"]["output"] == "public label"
    assert steps["label"]["sensitive"] is None
    assert SECRET not in json.dumps(waiting)

    sent = await client.post(API + "/workflows/vault/instances/v1/events/go", json="ok")
    assert sent.status_code == 200, sent.text
    done = await details_when(client, "v1", "complete")
    # The run got the real value back when it replayed "fetch key" from storage...
    assert done["output"] == {"signed": "6789/ok", "key": {"api_key": SECRET}}
    steps = {s["name"]: s for s in done["steps"]}
    # ... while no step's output shows it; the error of a sensitive step is shown as it is.
    assert [steps[n]["output"] for n in ("fetch key", "sign")] == ["[REDACTED]", "[REDACTED]"]
    assert steps["doomed"]["output"] is None
    assert steps["doomed"]["sensitive"] == "output"
    assert steps["doomed"]["error"]["message"] == "error text is never redacted"
    assert SECRET not in json.dumps(done["steps"])

    # dwf instances describe prints what the API sent, and says why it is redacted.
    printer = Printer(as_json=False)
    printer.instance(done)
    out = capsys.readouterr().out
    assert "[REDACTED] (sensitive output)" in out
    assert "public label" in out
    assert "6789/ok" in out  # the instance's own output: run()'s return value, not redacted
    assert "error text is never redacted" in out
    assert out.count(SECRET) == 1  # that output, and no step's


def test_a_running_sensitive_step_echoes_the_option_in_its_config() -> None:
    """Cloudflare's instance details carry each step's config, ``sensitive`` included; ours
    shows the (wrangler-read) config of a step that has not finished, and the flag always."""
    from dynamic_workflows.host.admin import step_json
    from dynamic_workflows.queries import StepView

    def view(state: str, *, sensitive: bool) -> StepView:
        return StepView("s", 1, "do", state, None, None, 1, None, None, sensitive=sensitive)

    running = step_json(view("retrying", sensitive=True))
    assert (running["config"], running["sensitive"]) == (
        {"retries": {}, "sensitive": "output"},
        "output",
    )
    finished = step_json(view("failed", sensitive=True))
    assert (finished["config"], finished["sensitive"]) == (None, "output")
    plain = step_json(view("retrying", sensitive=False))
    assert (plain["config"], plain["sensitive"]) == ({"retries": {}}, None)
