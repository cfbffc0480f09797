"""``workers.workflows``: the workflow-specific errors of Cloudflare's Python SDK."""

from __future__ import annotations

from ..core.step_errors import (
    NonRetryableDelayError,
    NonRetryableError,
    StepError,
    WorkflowTimeoutError,
)

__all__ = ["NonRetryableDelayError", "NonRetryableError", "StepError", "WorkflowTimeoutError"]
