"""Workflow code written as Cloudflare's Python Workflows docs write it (``from pyodide.ffi import
to_js``, ``from js import Object``) runs unchanged: loaded code imports ``pyodide`` and ``js``
as shims that do the obvious thing on CPython."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from unit_support import EnvFactory

from dynamic_workflows.sandbox.code import ModuleSource
from dynamic_workflows.sandbox.runtime import TenantRuntime
from dynamic_workflows.workers import Request, WorkflowEntrypoint
from dynamic_workflows.workers.js import JSON, Object
from dynamic_workflows.workers.pyodide.ffi import JsProxy, to_js

# The docs' examples (workflows/python/bindings and python-workers-api), as they are written.
DOCS_CODE = """
from pyodide.ffi import to_js
from js import Object
import pyodide.ffi
import js

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class DemoWorkflowClass(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do('step-name', config={"retries": {"limit": 1, "delay": "10 seconds"}})
        async def first_step():
            payload = event["payload"]
            return to_js(payload, dict_converter=Object.fromEntries)

        return {
            "payload": await first_step(),
            "proxy": isinstance(event, pyodide.ffi.JsProxy),
            "json": js.JSON.stringify({"a": [1, 2]}),
        }


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        event = {"foo": "bar"}
        options = to_js({"params": event}, dict_converter=Object.fromEntries)
        instance = await self.env.MY_WORKFLOW.create(options)
        batch = [
            to_js({"id": "id-abc123", "params": {"hello": "world-0"}},
                  dict_converter=Object.fromEntries),
            to_js({"id": "id-def456", "params": {"hello": "world-1"}},
                  dict_converter=Object.fromEntries),
        ]
        await self.env.MY_WORKFLOW.create_batch(batch)
        return Response.json({"id": instance.id})
"""


def runtime(env: dict[str, Any]) -> TenantRuntime:
    return TenantRuntime(
        "docs", [ModuleSource("main.py", "main", "py", DOCS_CODE)], "main.py", env, None
    )


RUNTIMES: dict[str, TenantRuntime] = {}


class DocsWorkflow(WorkflowEntrypoint):
    """The engine's workflow class: runs the tenant's DemoWorkflowClass from its runtime."""

    async def run(self, event: Any, step: Any) -> Any:
        return await RUNTIMES["docs"].new_entrypoint("DemoWorkflowClass").run(event, step)


async def test_the_docs_code_runs_unchanged(make_env: EnvFactory) -> None:
    async with make_env(DocsWorkflow) as wf:
        RUNTIMES["docs"] = runtime({"MY_WORKFLOW": wf.binding})
        response = await RUNTIMES["docs"].call(None, "fetch", [Request("http://x/")], {})
        iid = (await response.json_body())["id"]
        status = await wf.wait_for(await wf.binding.get(iid))
        assert status["output"] == {
            "payload": {"foo": "bar"},
            "proxy": False,
            "json": '{"a":[1,2]}',
        }, status
        batch = [await wf.wait_for(await wf.binding.get(i)) for i in ("id-abc123", "id-def456")]
        assert [s["output"]["payload"] for s in batch] == [
            {"hello": "world-0"},
            {"hello": "world-1"},
        ]


def test_the_shims_are_not_installed_for_everyone() -> None:
    # Only code loaded through the runtime's importer sees them.
    assert "js" not in sys.modules
    with pytest.raises(ImportError):
        __import__("pyodide")


def test_a_tenant_module_named_js_wins_over_the_shim() -> None:
    rt = TenantRuntime(
        "t",
        [
            ModuleSource("main.py", "main", "py", "import js\nVALUE = js.MINE\n"),
            ModuleSource("js.py", "js", "py", "MINE = 'tenant js'\n"),
        ],
        "main.py",
        {},
        None,
    )
    assert rt.main.VALUE == "tenant js"


def test_to_js_and_object() -> None:
    value = {"a": ({"b": 1},), "c": [1, (2, 3)]}
    assert to_js(value) == {"a": [{"b": 1}], "c": [1, [2, 3]]}
    assert to_js(value, dict_converter=Object.fromEntries) == {"a": [{"b": 1}], "c": [1, [2, 3]]}
    assert to_js(value, depth=1) == {"a": ({"b": 1},), "c": [1, (2, 3)]}
    assert to_js(7) == 7
    seen: list[Any] = []
    to_js({"k": 1}, dict_converter=lambda items: seen.append(list(items)))
    assert seen == [[("k", 1)]]
    assert not isinstance({}, JsProxy)
    assert Object.keys({"x": 1}) == ["x"]
    assert JSON.parse(JSON.stringify({"x": [1]})) == {"x": [1]}


def test_a_js_global_without_a_counterpart_says_so() -> None:
    import dynamic_workflows.workers.js as js

    with pytest.raises(AttributeError, match=r"js.fetch is not available: .* provides JSON"):
        js.fetch  # noqa: B018
