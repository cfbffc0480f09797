"""The Worker Loader, public names: ``env.LOADER`` for tenant code loaded at runtime.

See :mod:`dynamic_workflows.sandbox` for how it works (fork server, confined workers, protocol).
"""

from __future__ import annotations

from .sandbox.code import INHERIT, WorkerCode, WorkerLimits
from .sandbox.confine import ConfinementPolicy, SandboxUnavailableError
from .sandbox.errors import TenantWorkerError, WorkerCodeError
from .sandbox.loader import DEFAULT_LIMITS, EntrypointStub, InProcessLoader, Loader, WorkerStub

__all__ = [
    "DEFAULT_LIMITS",
    "INHERIT",
    "ConfinementPolicy",
    "EntrypointStub",
    "InProcessLoader",
    "Loader",
    "SandboxUnavailableError",
    "TenantWorkerError",
    "WorkerCode",
    "WorkerCodeError",
    "WorkerLimits",
    "WorkerStub",
]
