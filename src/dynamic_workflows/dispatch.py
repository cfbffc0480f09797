"""The dispatch library: route every run of one Workflow to the tenant code that created it.

Python port of ``@cloudflare/dynamic-workflows``: a platform's dispatcher hands each tenant a
*wrapped* Workflow binding (:func:`wrap_workflow_binding`) that stores routing metadata with every
instance it creates, and exports a workflow class made by
:func:`create_dynamic_workflow_entrypoint`, which reads that metadata back on every run (every
wake-up) to load the tenant's code and forward ``run(event, step)`` to it.

Persisted envelope (exactly the reference's)::

    {"__dispatcherMetadata": <metadata>, "params": <tenant params>}

Where the reference is weak, this one is better: a wrapped binding only sees instances created
through a binding with the same metadata (others look like ids that do not exist), so tenants'
ids never collide or leak; ``terminate``/``restart`` options and ``delete`` are forwarded; absent
params round-trip as None; tenant code never sees the metadata.

What stays as there: the dispatcher's own, unwrapped binding is the platform's trusted view, and
its ``get(id)`` finds an instance whichever tenant created it (an id that several tenants hold
raises ``AmbiguousInstanceError``: the dispatcher names the tenant by wrapping the binding with
its metadata); see :meth:`WorkflowBinding.get <dynamic_workflows.binding.WorkflowBinding.get>`.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .core.codec import SerializationError, encode
from .core.tenancy import TenantPolicy, parse_policy
from .errors import MissingDispatcherMetadataError, WorkflowError
from .workers import WorkflowEntrypoint

__all__ = [
    "METADATA_KEY",
    "DynamicWorkflowBinding",
    "DynamicWorkflowEntrypoint",
    "MissingDispatcherMetadataError",
    "bind_env",
    "create_dynamic_workflow_entrypoint",
    "dispatch_workflow",
    "scope_of",
    "wrap_workflow_binding",
]

METADATA_KEY = "__dispatcherMetadata"

_current_env: contextvars.ContextVar[Any] = contextvars.ContextVar("dwf_dispatcher_env")
_MISSING: Any = object()


class bind_env:  # a context manager used as a function: ``with bind_env(env):``
    """Make ``env`` the dispatcher env that :func:`wrap_workflow_binding` resolves bindings in
    (the host does this around every call into dispatcher code)."""

    __slots__ = ("_env", "_token")

    def __init__(self, env: Any) -> None:
        self._env = env

    def __enter__(self) -> None:
        self._token = _current_env.set(self._env)

    def __exit__(self, *exc: object) -> None:
        _current_env.reset(self._token)


_SCALARS = (str, int, bool, type(None))


def _scope_key(metadata: Any) -> Any:
    """A hashable key for simple metadata (a scalar, or a flat dict of str keys to scalars: what
    a dispatcher builds on every request) that tells apart values that compare equal but encode
    differently (``1`` and ``True``); None for anything else (hashed on every call)."""
    kind = type(metadata)
    if kind is dict:
        key: list[Any] = []
        for k, v in metadata.items():
            if type(k) is not str or type(v) not in _SCALARS:
                return None
            key += (k, type(v), v)
        return tuple(key)
    if kind in _SCALARS:
        return (kind, metadata)
    return None


def scope_of(metadata: Any) -> str:
    """The id scope of a tenant: a hash of its metadata, the same whatever the key order (the
    admin API uses it to place an instance it creates in that tenant's namespace)."""
    key = _scope_key(metadata)
    if key is not None:
        return _flat_scope(key)
    return _hash_scope(metadata)


@functools.lru_cache(maxsize=4096)
def _flat_scope(key: tuple[Any, ...]) -> str:
    # The key holds the metadata itself: (kind, value) for a scalar, (k, kind, v, ...) for a dict.
    if len(key) == 2 and isinstance(key[0], type):
        return _hash_scope(key[1])
    return _hash_scope({key[i]: key[i + 2] for i in range(0, len(key), 3)})


def _hash_scope(metadata: Any) -> str:
    try:
        canonical = encode(_sorted(metadata))
    except SerializationError as exc:
        raise WorkflowError(f"dispatcher metadata must be JSON-serialisable: {exc}") from None
    return "m-" + hashlib.sha256(canonical).hexdigest()[:32]


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _wrap_params(metadata: Any, options: Any, id: Any, params: Any) -> dict[str, Any]:
    if options is not None:
        if not isinstance(options, Mapping):
            raise WorkflowError(
                f"create() options must be a dict with 'id' and/or 'params', got "
                f"{type(options).__name__}"
            )
        id = options.get("id", id)
        params = options.get("params", params)
    wrapped: dict[str, Any] = {
        "params": {METADATA_KEY: metadata, "params": None if params is _MISSING else params}
    }
    if id is not None:
        wrapped["id"] = id
    if isinstance(options, Mapping) and options.get("retention") is not None:
        wrapped["retention"] = options["retention"]  # forwarded, as every option is
    return wrapped


class DynamicWorkflowBinding:
    """What tenant code sees as ``env.WORKFLOWS``: ``create``, ``create_batch``, ``get`` and
    ``delete_batch`` on the real binding, with the dispatcher's metadata attached and ids scoped
    to that metadata.

    The metadata and the real binding are private: across the sandbox only the public methods are
    reachable."""

    def __init__(
        self,
        metadata: Any,
        *,
        binding_name: str = "WORKFLOWS",
        env: Any = None,
        limits: Mapping[str, Any] | TenantPolicy | None = None,
    ) -> None:
        self._metadata = metadata
        self._binding_name = binding_name
        self._env = env if env is not None else _current_env.get(None)
        self._scope = scope_of(metadata)
        if limits is not None:
            parse_policy(limits)  # a wrong field fails here, where the platform wrote it
        self._limits = limits

    def _binding(self) -> Any:
        env = self._env if self._env is not None else _current_env.get(None)
        binding = None
        if env is not None:
            binding = (
                env.get(self._binding_name)
                if isinstance(env, Mapping)
                else getattr(env, self._binding_name, None)
            )
        if binding is None:
            raise WorkflowError(
                f'dynamic-workflows: no Workflow binding named "{self._binding_name}" found on '
                "env. Pass the name of the binding declared in the dispatcher's wrangler config "
                'as wrap_workflow_binding(..., binding_name="...").'
            )
        with_scope = getattr(binding, "with_scope", None)
        if with_scope is None:
            return binding
        if self._limits is None:
            return with_scope(self._scope)
        return with_scope(self._scope, limits=self._limits)

    async def create(
        self,
        options: Mapping[str, Any] | None = None,
        /,
        *,
        id: str | None = None,
        params: Any = _MISSING,
    ) -> Any:
        """Create an instance of the tenant's workflow (``create(id=..., params=...)`` or
        ``create({"id", "params"})``)."""
        wrapped = _wrap_params(self._metadata, options, id, params)
        return await self._binding().create(wrapped)

    async def create_batch(self, batch: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Any:
        """Create up to 100 instances: ``create_batch([{"id", "params"}, ...])`` (existing ids
        skipped), or the object form ``{"count": n, "params": ...}`` / ``{"instances": [...]}``
        answering ``{"created", "errors"}`` (see :meth:`WorkflowBinding.create_batch
        <dynamic_workflows.binding.WorkflowBinding.create_batch>`)."""
        if isinstance(batch, Mapping):
            wrapped: dict[str, Any] = dict(batch)
            if "instances" in batch:
                instances = batch["instances"]
                if not isinstance(instances, list | tuple):
                    raise WorkflowError("create_batch(): instances must be a list")
                wrapped["instances"] = [
                    _wrap_params(self._metadata, item, None, _MISSING) for item in instances
                ]
            elif "count" in batch:
                wrapped["params"] = _wrap_params(
                    self._metadata, None, None, batch.get("params", _MISSING)
                )["params"]
            return await self._binding().create_batch(wrapped)
        if not isinstance(batch, list | tuple):
            raise WorkflowError("create_batch() takes a list of {'id', 'params'} dicts")
        items = [_wrap_params(self._metadata, item, None, _MISSING) for item in batch]
        result: list[Any] = await self._binding().create_batch(items)
        return result

    createBatch = create_batch  # Cloudflare's spelling

    async def get(self, id: str) -> Any:
        """An instance created through a binding with the same metadata; any other id raises
        ``InstanceNotFoundError``, exactly as an id that does not exist."""
        return await self._binding().get(id)

    async def delete_batch(self, instance_ids: Sequence[str] | Mapping[str, Any]) -> Any:
        """Delete up to 100 of this tenant's instances: ``{"deleted", "errors"}``; another
        tenant's id is reported as not found."""
        return await self._binding().delete_batch(instance_ids)

    deleteBatch = delete_batch  # Cloudflare's spelling

    def __repr__(self) -> str:
        return f"<DynamicWorkflowBinding {self._binding_name}>"


def wrap_workflow_binding(
    metadata: Any,
    *,
    binding_name: str = "WORKFLOWS",
    limits: Mapping[str, Any] | TenantPolicy | None = None,
) -> DynamicWorkflowBinding:
    """A Workflow binding for tenant code: every instance it creates carries ``metadata``, which
    the dynamic entrypoint uses to route runs back to this tenant's code.

    ``limits``: the tenant's controls, decided by the platform (from the metadata, its plan...):
    any of ``max_running``, ``max_live``, ``create_rate``, ``create_burst``, ``weight``
    (:mod:`dynamic_workflows.core.tenancy`), over the project's ``dynamic_workflows.tenants``
    defaults; ``None`` for a field removes that cap. A create over the tenant's rate or
    ``max_live`` raises :class:`~dynamic_workflows.errors.TenantLimitError` (HTTP 429 if the
    dispatcher lets it through). Tenant code cannot see or change them."""
    return DynamicWorkflowBinding(metadata, binding_name=binding_name, limits=limits)


LoadRunner = Callable[[dict[str, Any]], Any]


async def dispatch_workflow(
    *, env: Any, ctx: Any, event: Mapping[str, Any], step: Any, load_runner: LoadRunner
) -> Any:
    """Unwrap the envelope, load the tenant's runner (``load_runner({"metadata", "env",
    "ctx"})``, sync or async, called on every run) and forward ``run(inner_event, step)``."""
    payload = event.get("payload") if isinstance(event, Mapping) else None
    if not isinstance(payload, Mapping) or METADATA_KEY not in payload or "params" not in payload:
        raise MissingDispatcherMetadataError()
    runner = load_runner({"metadata": payload[METADATA_KEY], "env": env, "ctx": ctx})
    if inspect.isawaitable(runner):
        runner = await runner
    inner = {
        "payload": payload["params"],
        "timestamp": event.get("timestamp"),
        "instanceId": event.get("instanceId"),
        "workflowName": event.get("workflowName"),
    }
    if event.get("schedule") is not None:  # a cron tick's instance (WorkflowCronSchedule)
        inner["schedule"] = event["schedule"]
    result = runner.run(inner, step)
    if inspect.isawaitable(result):
        result = await result
    return result


class DynamicWorkflowEntrypoint(WorkflowEntrypoint):
    """The base of every class :func:`create_dynamic_workflow_entrypoint` makes: a workflow whose
    instances run the code of the tenant their params' envelope names, so whoever creates one
    without the envelope (the admin API, ``dwf workflows trigger``) can be told so up front."""


def create_dynamic_workflow_entrypoint(
    load_runner: Callable[[dict[str, Any]], Any | Awaitable[Any]],
) -> type[DynamicWorkflowEntrypoint]:
    """The workflow class to export under the ``class_name`` of the dispatcher's config."""

    class Entrypoint(DynamicWorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            with bind_env(self.env):
                return await dispatch_workflow(
                    env=self.env, ctx=self.ctx, event=event, step=step, load_runner=load_runner
                )

    Entrypoint.__name__ = Entrypoint.__qualname__ = "DynamicWorkflowEntrypoint"
    return Entrypoint
