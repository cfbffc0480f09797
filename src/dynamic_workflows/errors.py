"""Every error this package raises on purpose.

The tree::

    DynamicWorkflowsError                 root of everything raised by dynamic_workflows
    ├── ConfigurationError                bad engine/step configuration (durations, retries, URLs)
    ├── StorageError                      the database failed or is unusable
    ├── WorkflowError                     an operation on a workflow or instance was refused;
    │   │                                 ``code`` is Cloudflare's (``instance.not_found``...)
    │   ├── InvalidInstanceIdError        id not ``^[a-zA-Z0-9_][a-zA-Z0-9-_]*$`` or > 100 chars
    │   ├── InstanceAlreadyExistsError
    │   ├── InstanceNotFoundError
    │   ├── InvalidEventTypeError
    │   ├── CannotTerminateError          the instance is already in a finite state
    │   ├── BatchError                    empty batch or more than 100 items
    │   ├── UnknownWorkflowError          no workflow registered under that name
    │   └── LimitExceededError            size/count limits (params, payloads, results, steps)
    └── WorkflowDefinitionError           the tenant used the SDK wrongly (bad step name, params)

Tenant-visible errors that Cloudflare's SDK defines live in :mod:`dynamic_workflows.workers`
(``NonRetryableError``) and are plain ``Exception`` subclasses, as there.

The engine's control signals (:class:`RunSuspended`, :class:`RunCancelled`) derive from
``BaseException`` so that a tenant's ``except Exception`` cannot swallow them.
"""

from __future__ import annotations

__all__ = [
    "BatchError",
    "CannotTerminateError",
    "ConfigurationError",
    "DynamicWorkflowsError",
    "InstanceAlreadyExistsError",
    "InstanceNotFoundError",
    "InvalidEventTypeError",
    "InvalidInstanceIdError",
    "LimitExceededError",
    "RunCancelled",
    "RunSuspended",
    "StorageError",
    "UnknownWorkflowError",
    "WorkflowDefinitionError",
    "WorkflowError",
]


class DynamicWorkflowsError(Exception):
    """Root of every error raised on purpose by dynamic_workflows."""


class ConfigurationError(DynamicWorkflowsError):
    """A configuration value (duration, retry policy, engine option) is invalid."""


class StorageError(DynamicWorkflowsError):
    """The storage backend failed; the message names the operation."""


class WorkflowDefinitionError(DynamicWorkflowsError):
    """Tenant code used the workflow API wrongly (for example a bad step name)."""


class WorkflowError(DynamicWorkflowsError):
    """An operation on a workflow or an instance was refused.

    ``code`` is the reference's machine-readable code (``instance.not_found``...), or ``None``.
    """

    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidInstanceIdError(WorkflowError):
    """The instance id is not 1-100 characters of ``[a-zA-Z0-9_-]`` (not starting with ``-``)."""

    code = "instance.invalid_id"

    def __init__(self, instance_id: object) -> None:
        super().__init__("Workflow instance has invalid id")
        self.instance_id = instance_id


class InstanceAlreadyExistsError(WorkflowError):
    """An instance with this id already exists in this workflow."""

    code = "instance.already_exists"

    def __init__(self, instance_id: str) -> None:
        super().__init__(
            f'(instance.already_exists) Workflow instance with id "{instance_id}" already exists'
        )
        self.instance_id = instance_id


class InstanceNotFoundError(WorkflowError):
    """No instance with this id (or not visible through this binding)."""

    code = "instance.not_found"

    def __init__(self, instance_id: str) -> None:
        super().__init__("(instance.not_found) Instance not found")
        self.instance_id = instance_id


class InvalidEventTypeError(WorkflowError):
    """The event type is not 1-100 characters of ``[a-zA-Z0-9_-]`` (not starting with ``-``)."""

    code = "instance.invalid_event_type"

    def __init__(self, event_type: object) -> None:
        super().__init__(
            f"Invalid event type {event_type!r}: at most 100 characters matching "
            "^[a-zA-Z0-9_][a-zA-Z0-9-_]*$"
        )
        self.event_type = event_type


class CannotTerminateError(WorkflowError):
    """The instance already finished (complete, errored or terminated)."""

    code = "instance.cannot_terminate"

    def __init__(self) -> None:
        super().__init__(
            "(instance.cannot_terminate) Cannot terminate instance since its on a finite state"
        )


class BatchError(WorkflowError):
    """``create_batch`` got an empty batch or more than the allowed number of items."""

    code = "instance.batch_invalid"


class UnknownWorkflowError(WorkflowError):
    """No workflow is registered under that name."""

    code = "workflow.not_found"


class LimitExceededError(WorkflowError):
    """A size or count limit was exceeded; the message names the limit and the value."""

    code = "limit.exceeded"


class RunSuspended(BaseException):
    """Raised inside a run to unwind it when it hibernates; never seen by callers."""


class RunCancelled(BaseException):
    """Raised inside a run whose instance was terminated, restarted or deleted meanwhile."""
