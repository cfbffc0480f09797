"""dynamic-workflows: durable execution for workflow code loaded at runtime.

The engine (:class:`Engine`) persists instances, steps, timers and events in a :mod:`storage`
backend and replays ``run(event, step)`` on every wake-up. Tenant code is written against
Cloudflare's Python Workflows SDK, importable here as :mod:`dynamic_workflows.workers` (and as
``workers`` by code the runtime loads).
"""

from __future__ import annotations

from .binding import Instance, WorkflowBinding
from .core.clock import Clock, MockClock, SystemClock
from .core.limits import Limits
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
    StorageError,
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

__version__ = "0.1.0"
