"""The public surface is explicit and pinned: changing it must be a decision, not an accident."""

from __future__ import annotations

import importlib
import subprocess
import sys

import dynamic_workflows
from dynamic_workflows import workers
from dynamic_workflows.errors import DynamicWorkflowsError
from dynamic_workflows.modules import load_module_from_source


def test_package_exports_are_pinned() -> None:
    assert sorted(dynamic_workflows.__all__) == [
        "BatchError",
        "CannotTerminateError",
        "Clock",
        "ConfigurationError",
        "DynamicWorkflowBinding",
        "DynamicWorkflowsError",
        "Engine",
        "Instance",
        "InstanceAlreadyExistsError",
        "InstanceNotFoundError",
        "InvalidEventTypeError",
        "InvalidInstanceIdError",
        "LimitExceededError",
        "Limits",
        "MemoryStorage",
        "MissingDispatcherMetadataError",
        "MockClock",
        "SQLiteStorage",
        "Status",
        "Storage",
        "StorageError",
        "SystemClock",
        "TenantLimitError",
        "TenantPolicy",
        "UnknownWorkflowError",
        "WorkflowBinding",
        "WorkflowDefinitionError",
        "WorkflowError",
        "create_dynamic_workflow_entrypoint",
        "dispatch_workflow",
        "open_storage",
        "wrap_workflow_binding",
    ]
    for name in dynamic_workflows.__all__:
        assert getattr(dynamic_workflows, name) is not None


def test_workers_exports_match_the_cloudflare_sdk_names() -> None:
    assert {"WorkflowEntrypoint", "WorkerEntrypoint", "Response", "Request"} <= set(workers.__all__)
    from dynamic_workflows.workers.workflows import NonRetryableError

    assert issubclass(NonRetryableError, Exception)


def test_every_error_derives_from_the_root() -> None:
    from dynamic_workflows import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        if name in ("RunSuspended", "RunCancelled"):
            # control signals: BaseException so that tenant `except Exception` cannot swallow them
            assert not issubclass(cls, Exception)
        else:
            assert issubclass(cls, DynamicWorkflowsError), name


def test_loaded_code_imports_the_sdk_as_workers() -> None:
    module = load_module_from_source(
        "tenant_mod",
        "from workers import WorkflowEntrypoint, Response\n"
        "from workers.workflows import NonRetryableError\n"
        "class W(WorkflowEntrypoint):\n    pass\n",
    )
    assert issubclass(module.W, workers.WorkflowEntrypoint)
    assert (
        module.NonRetryableError
        is importlib.import_module("dynamic_workflows.workers.workflows").NonRetryableError
    )


def test_no_top_level_workers_distribution_is_installed() -> None:
    # In a fresh interpreter that has not loaded tenant code, `workers` is not importable:
    # we never install (or shadow) a top-level package of that name.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import dynamic_workflows, importlib.util as u; print(u.find_spec('workers') is None)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "True"


def test_the_dispatch_library_is_importable_from_the_root() -> None:
    from dynamic_workflows import (
        DynamicWorkflowBinding,
        MissingDispatcherMetadataError,
        create_dynamic_workflow_entrypoint,
        dispatch,
        dispatch_workflow,
        wrap_workflow_binding,
    )

    assert wrap_workflow_binding is dispatch.wrap_workflow_binding
    assert create_dynamic_workflow_entrypoint is dispatch.create_dynamic_workflow_entrypoint
    assert DynamicWorkflowBinding is dispatch.DynamicWorkflowBinding
    assert dispatch_workflow is dispatch.dispatch_workflow
    assert MissingDispatcherMetadataError is dispatch.MissingDispatcherMetadataError


def test_dispatch_exports_are_pinned() -> None:
    from dynamic_workflows import dispatch

    assert sorted(dispatch.__all__) == [
        "DynamicWorkflowBinding",
        "DynamicWorkflowEntrypoint",
        "METADATA_KEY",
        "MissingDispatcherMetadataError",
        "bind_env",
        "create_dynamic_workflow_entrypoint",
        "dispatch_workflow",
        "scope_of",
        "wrap_workflow_binding",
    ]


def test_testing_exports_are_pinned() -> None:
    from dynamic_workflows import testing

    assert sorted(testing.__all__) == ["WorkflowTestEnv"]


def test_workers_exports_are_pinned() -> None:
    from dynamic_workflows.workers import workflows

    assert sorted(workers.__all__) == [
        "Env",
        "ExecutionContext",
        "FetchResponse",
        "Headers",
        "NonRetryableError",
        "Request",
        "Response",
        "WorkerEntrypoint",
        "WorkflowEntrypoint",
        "fetch",
    ]
    assert sorted(workflows.__all__) == [
        "NonRetryableDelayError",
        "NonRetryableError",
        "StepError",
        "WorkflowTimeoutError",
    ]


# Exception classes that never leave the module defining them: each is caught there and turned
# into an error of the tree (or an HTTP answer) before anything else sees it.
_INTERNAL_ERRORS = {
    "dynamic_workflows.host.admin.APIError": "an HTTP error answer inside the admin app",
    "dynamic_workflows.host.jsonc.JSONCError": "turned into ProjectConfigError by host.config",
    "dynamic_workflows.workers.pyodide.ffi.JsException": "Pyodide's name, never raised: the "
    "shim defines it so that tenant code's `except JsException` works",
}


def test_every_error_class_in_the_package_is_in_the_one_tree() -> None:
    import pkgutil

    from dynamic_workflows import errors
    from dynamic_workflows.core import step_errors

    tenant_sdk = {getattr(step_errors, n) for n in step_errors.__all__}
    tree = {getattr(errors, n) for n in errors.__all__}
    stray = []
    for info in pkgutil.walk_packages(dynamic_workflows.__path__, "dynamic_workflows."):
        if info.name.endswith((".zygote", ".__main__")):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
                and value not in tree
                and value not in tenant_sdk
                and f"{info.name}.{value.__name__}" not in _INTERNAL_ERRORS
            ):
                stray.append(f"{info.name}.{value.__name__}")
    assert stray == [], "error classes outside dynamic_workflows.errors: " + ", ".join(stray)
    for name in errors.__all__:
        assert name in (errors.__doc__ or ""), f"{name} is missing from the tree in errors.py"
