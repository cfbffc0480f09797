"""Errors of the Worker Loader and its sandbox.

::

    DynamicWorkflowsError
    ├── ConfigurationError
    │   └── WorkerCodeError          a WorkerCode field is missing or invalid (the field is named)
    ├── TenantWorkerError            a tenant's worker process died, broke a limit or stopped
    │                                answering; names the tenant and the cause
    └── ProtocolError                a malformed frame or message on a worker socket
        ├── FrameTooLargeError       a frame over the size limit
        └── ProtocolVersionError     the two sides speak different protocol versions
"""

from __future__ import annotations

from ..errors import ConfigurationError, DynamicWorkflowsError

__all__ = [
    "FrameTooLargeError",
    "ProtocolError",
    "ProtocolVersionError",
    "TenantWorkerError",
    "WorkerCodeError",
]


class WorkerCodeError(ConfigurationError):
    """A :class:`~dynamic_workflows.sandbox.code.WorkerCode` field is missing or invalid."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"WorkerCode.{field}: {problem}")
        self.field = field


class TenantWorkerError(DynamicWorkflowsError):
    """A tenant's worker died, exceeded a limit or stopped answering.

    Only the calls of that tenant's worker fail; the next call gets a fresh process.
    ``tenant`` is the loader id, ``reason`` what happened (for example
    ``"call exceeded the wall-time limit of 5000 ms"``).
    """

    def __init__(self, tenant: str, reason: str) -> None:
        super().__init__(f"tenant {tenant!r}: {reason}")
        self.tenant = tenant
        self.reason = reason


class ProtocolError(DynamicWorkflowsError):
    """A frame or message on a worker's socket is malformed."""


class FrameTooLargeError(ProtocolError):
    """A frame is larger than the configured maximum."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size:,} bytes exceeds the limit of {limit:,} bytes")
        self.size = size
        self.limit = limit


class ProtocolVersionError(ProtocolError):
    """The peer speaks another version of the worker protocol."""

    def __init__(self, ours: int, theirs: object) -> None:
        super().__init__(
            f"worker protocol version mismatch: this side speaks version {ours}, the peer "
            f"speaks {theirs!r} (host and sandbox must run the same dynamic_workflows release)"
        )
        self.ours = ours
        self.theirs = theirs
