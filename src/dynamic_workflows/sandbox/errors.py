"""The sandbox's errors, re-exported from the one tree in :mod:`dynamic_workflows.errors`.

::

    DynamicWorkflowsError
    ├── ConfigurationError
    │   └── WorkerCodeError          a WorkerCode field is missing or invalid (the field is named)
    ├── TenantWorkerError            a tenant's worker process died, broke a limit or stopped
    │                                answering; names the tenant and the cause
    ├── SandboxUnavailableError      the machine cannot confine untrusted code as required
    └── ProtocolError                a malformed frame or message on a worker socket
        ├── FrameTooLargeError       a frame over the size limit
        └── ProtocolVersionError     the two sides speak different protocol versions
"""

from __future__ import annotations

from ..errors import (
    FrameTooLargeError,
    ProtocolError,
    ProtocolVersionError,
    SandboxUnavailableError,
    TenantWorkerError,
    WorkerCodeError,
)

__all__ = [
    "FrameTooLargeError",
    "ProtocolError",
    "ProtocolVersionError",
    "SandboxUnavailableError",
    "TenantWorkerError",
    "WorkerCodeError",
]
