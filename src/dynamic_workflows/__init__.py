"""dynamic-workflows: durable execution for workflow code loaded at runtime.

The engine (:class:`Engine`) persists instances, steps, timers and events in a :mod:`storage`
backend and replays ``run(event, step)`` on every wake-up. Tenant code is written against
Cloudflare's Python Workflows SDK, importable here as :mod:`dynamic_workflows.workers` (and as
``workers`` by code the runtime loads).

The dispatch library (Cloudflare's ``@cloudflare/dynamic-workflows``) is importable from here, as
the JS library is from its package root::

    from dynamic_workflows import wrap_workflow_binding, create_dynamic_workflow_entrypoint
"""

from __future__ import annotations

from .binding import Instance, WorkflowBinding
from .core.clock import Clock, MockClock, SystemClock
from .core.limits import Limits
from .core.tenancy import TenantPolicy
from .dispatch import (
    DynamicWorkflowBinding,
    create_dynamic_workflow_entrypoint,
    dispatch_workflow,
    wrap_workflow_binding,
)
from .engine import Engine
from .errors import (
    BatchError,
    CannotTerminateError,
    ConfigurationError,
    DynamicWorkflowsError,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    InvalidEventTypeError,
    InvalidInstanceIdError,
    LimitExceededError,
    MissingDispatcherMetadataError,
    StorageError,
    TenantLimitError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
    WorkflowError,
)
from .storage import MemoryStorage, SQLiteStorage, Storage, open_storage
from .storage.base import Status

__all__ = [
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

__version__ = "0.1.0"
