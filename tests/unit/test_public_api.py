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
        "MockClock",
        "SQLiteStorage",
        "Status",
        "Storage",
        "StorageError",
        "SystemClock",
        "UnknownWorkflowError",
        "WorkflowBinding",
        "WorkflowDefinitionError",
        "WorkflowError",
        "open_storage",
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
