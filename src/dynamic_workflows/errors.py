"""Every error this package raises on purpose, in one tree.

The tree::

    DynamicWorkflowsError                 root of everything raised by dynamic_workflows
    ├── ConfigurationError                bad engine/step configuration (durations, retries, URLs)
    │   ├── WorkerCodeError               a WorkerCode field is missing or invalid (names it)
    │   ├── ProjectConfigError            wrangler.jsonc/.toml missing or wrong (file, field)
    │   └── ProjectLoadError              the project's main module cannot be imported/used
    ├── StorageError                      the database failed or is unusable
    ├── SerializationError                a value cannot be turned into JSON (also a TypeError)
    ├── InvalidQueryError                 a listing's paging or filter is invalid (a ValueError)
    ├── WorkflowError                     an operation on a workflow or instance was refused;
    │   │                                 ``code`` is Cloudflare's (``instance.not_found``...)
    │   ├── InvalidInstanceIdError        id not ``^[a-zA-Z0-9_][a-zA-Z0-9-_]*$`` or > 100 chars
    │   ├── InstanceAlreadyExistsError
    │   ├── InstanceNotFoundError
    │   ├── AmbiguousInstanceError        the unscoped binding's get(id) matches several tenants
    │   ├── InvalidEventTypeError
    │   ├── CannotTerminateError          the instance is already in a finite state
    │   ├── BatchError                    empty batch or more than 100 items
    │   ├── UnknownWorkflowError          no workflow registered under that name
    │   └── LimitExceededError            size/count limits (params, payloads, results, steps)
    │       └── TenantLimitError          a tenant's create_rate, create_burst or max_live
    │                                     (core/tenancy.py): HTTP 429, names the limit
    ├── WorkflowDefinitionError           the tenant used the SDK wrongly (bad step name, params)
    ├── MissingDispatcherMetadataError    a dynamic workflow's event lacks the dispatch envelope
    ├── TenantWorkerError                 a tenant's worker process died, broke a limit or stopped
    │                                     answering; names the tenant and the cause
    ├── SandboxUnavailableError           this machine cannot confine untrusted code as required
    ├── ProtocolError                     a malformed frame or message on a worker socket
    │   ├── FrameTooLargeError            a frame over the size limit
    │   └── ProtocolVersionError          the two sides speak different protocol versions
    ├── BodyTooLargeError                 an HTTP request body over the host's limit (ValueError)
    ├── ListenError                       a host listener's address cannot be bound (OSError)
    └── AdminError                        a call to the admin API from ``dwf`` failed

Tenant-visible errors that Cloudflare's SDK defines (``NonRetryableError``,
``WorkflowTimeoutError``, and ``StepError`` for a replayed error of a non-builtin class) are
plain ``Exception`` subclasses, as there: they live in :mod:`dynamic_workflows.core.step_errors`
and tenant code imports them from ``workers.workflows``.

The engine's control signals (:class:`RunSuspended`, :class:`RunCancelled`) derive from
``BaseException`` so that a tenant's ``except Exception`` cannot swallow them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AdminError",
    "AmbiguousInstanceError",
    "BatchError",
    "BodyTooLargeError",
    "CannotTerminateError",
    "ConfigurationError",
    "DynamicWorkflowsError",
    "FrameTooLargeError",
    "InstanceAlreadyExistsError",
    "InstanceNotFoundError",
    "InvalidEventTypeError",
    "InvalidInstanceIdError",
    "InvalidQueryError",
    "LimitExceededError",
    "ListenError",
    "MissingDispatcherMetadataError",
    "ProjectConfigError",
    "ProjectLoadError",
    "ProtocolError",
    "ProtocolVersionError",
    "RunCancelled",
    "RunSuspended",
    "SandboxUnavailableError",
    "SerializationError",
    "StorageError",
    "TenantLimitError",
    "TenantWorkerError",
    "UnknownWorkflowError",
    "WorkerCodeError",
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


class AmbiguousInstanceError(WorkflowError):
    """The dispatcher's unscoped binding was asked for an id that several tenants' scopes hold.

    The unscoped binding (``env.WORKFLOWS`` in the dispatcher) finds a tenant's instance by its id
    alone, as on Cloudflare; only an id that tenants share needs the tenant named, through that
    tenant's wrapped binding. ``scopes`` lists the scopes holding the id."""

    code = "instance.ambiguous"

    def __init__(self, instance_id: str, scopes: list[str]) -> None:
        super().__init__(
            f'(instance.ambiguous) Workflow instance id "{instance_id}" exists in '
            f"{len(scopes)} tenants' scopes, so the unwrapped binding cannot tell which one is "
            "meant; get it through that tenant's binding: "
            "wrap_workflow_binding(metadata).get(id), with the metadata the tenant's instances "
            "were created with"
        )
        self.instance_id = instance_id
        self.scopes = scopes


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


class TenantLimitError(LimitExceededError):
    """A create refused by the tenant's policy (:mod:`dynamic_workflows.core.tenancy`):
    ``limit`` names the field (``create_rate``, ``create_burst`` or ``max_live``), ``value``
    its setting, ``retry_after`` the seconds until the create can pass (None: not by waiting
    alone). Answered as HTTP 429 (with ``Retry-After`` when known)."""

    code = "tenant.limited"

    def __init__(
        self, scope: str, limit: str, value: float, message: str, *, retry_after: float | None
    ) -> None:
        super().__init__(f"tenant {scope[:12] or '(unscoped)'}: {message}")
        self.scope = scope
        self.limit = limit
        self.value = value
        self.retry_after = retry_after


class SerializationError(DynamicWorkflowsError, TypeError):
    """A value cannot be turned into JSON; the message says which type."""


class InvalidQueryError(DynamicWorkflowsError, ValueError):
    """A query of :mod:`dynamic_workflows.queries` got a bad limit, offset or status; the
    message names the argument."""


class MissingDispatcherMetadataError(DynamicWorkflowsError):
    """A dynamic workflow's event carries no dispatcher metadata: the instance was created
    through the raw binding instead of a wrapped one."""

    def __init__(self) -> None:
        super().__init__(
            "dynamic-workflows: workflow event is missing dispatcher metadata. Did you forget to "
            "wrap the Workflow binding with wrap_workflow_binding()?"
        )


class WorkerCodeError(ConfigurationError):
    """A :class:`~dynamic_workflows.sandbox.code.WorkerCode` field is missing or invalid."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"WorkerCode.{field}: {problem}")
        self.field = field


class ProjectConfigError(ConfigurationError):
    """A project's configuration is missing, unreadable or wrong; names file, field, problem."""

    def __init__(self, file: str | Path, field: str, problem: str) -> None:
        where = f"{file}: {field}" if field else str(file)
        super().__init__(f"{where}: {problem}")
        self.file = str(file)
        self.field = field
        self.problem = problem


class ProjectLoadError(ConfigurationError):
    """The project's main module cannot be imported, or does not export what the config names."""


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


class SandboxUnavailableError(DynamicWorkflowsError):
    """The machine (or this child) cannot confine untrusted code as the policy requires.

    Raised when the fail-closed rule is not met (seccomp and either Landlock or a network
    namespace; and Landlock whenever the children would run as uid 0), and when a layer fails to
    apply in a child; the message names the layer and the reason.
    """


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


class BodyTooLargeError(DynamicWorkflowsError, ValueError):
    """An HTTP request body is over the host's limit."""


class ListenError(DynamicWorkflowsError, OSError):
    """A listener's address cannot be bound; the message names it."""


class AdminError(DynamicWorkflowsError):
    """A call to the admin API failed; the message says why, in one line."""


class RunSuspended(BaseException):
    """Raised inside a run to unwind it when it hibernates; never seen by callers."""


class RunCancelled(BaseException):
    """Raised inside a run whose instance was terminated, restarted or deleted meanwhile."""
