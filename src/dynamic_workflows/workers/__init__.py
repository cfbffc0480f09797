"""``workers``: the Cloudflare Python Workers SDK surface that tenant and dispatcher code imports.

Code loaded by the runtime imports it as ``workers`` (and ``workers.workflows``); anyone else can
import it as ``dynamic_workflows.workers``.
"""

from __future__ import annotations

from typing import Any

from ._entrypoints import Env, ExecutionContext, WorkerEntrypoint, WorkflowEntrypoint
from ._fetch import FetchResponse, fetch
from ._http import Headers, Request, Response
from .workflows import NonRetryableError

__all__ = [
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


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
