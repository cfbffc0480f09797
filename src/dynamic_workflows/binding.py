"""The Workflow binding (``env.MY_WORKFLOW``) and instance handles, Cloudflare's API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .core.limits import check_instance_id
from .core.tenancy import TenantPolicy, parse_policy
from .errors import (
    AmbiguousInstanceError,
    BatchError,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    WorkflowError,
)
from .storage.base import InstanceRow

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Instance", "WorkflowBinding"]

_MISSING: Any = object()


def _options(options: object, id: Any, params: Any) -> tuple[str | None, Any]:
    if options is not None:
        if not isinstance(options, Mapping):
            raise WorkflowError(
                f"create() options must be a dict with 'id' and/or 'params', got "
                f"{type(options).__name__}"
            )
        unknown = set(options) - {"id", "params", "retention"}
        if unknown:
            raise WorkflowError(f"create() got unknown option(s) {sorted(unknown)}")
        id = options.get("id", id)
        params = options.get("params", params)
    return id, None if params is _MISSING else params


def _retention(options: object) -> object:
    """The ``retention`` create option of ``options`` (checked by the engine), or None."""
    return options.get("retention") if isinstance(options, Mapping) else None


def _over(own: object, shared: object) -> object:
    """An entry's ``retention`` over the batch's, field by field (as a create's own fields go
    over the workflow's defaults); anything but two dicts is left for the engine to judge."""
    if own is None:
        return shared
    if isinstance(own, Mapping) and isinstance(shared, Mapping):
        return {**shared, **own}
    return own


_STEP_TYPES = {"do": "do", "sleep": "sleep", "waitForEvent": "wait"}


def restart_point(options: object) -> tuple[str, int] | None:
    """The ``(name, count)`` of ``restart({"from": {"name", "count"?, "type"?}})``; None for a
    restart from the beginning. Errors name the bad field."""
    if options is None:
        return None
    if not isinstance(options, Mapping) or set(options) - {"from"}:
        raise WorkflowError(f"restart(): options must be {{'from': {{...}}}}, got {options!r}")
    point = options.get("from")
    if point is None:
        return None
    if not isinstance(point, Mapping) or set(point) - {"name", "count", "type"}:
        raise WorkflowError("restart(): from must be {'name', 'count'?, 'type'?}")
    name, count = point.get("name"), point.get("count", 1)
    if not isinstance(name, str) or not name:
        raise WorkflowError("restart(): from.name must be a step name")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise WorkflowError(f"restart(): from.count must be an integer >= 1, got {count!r}")
    kind = point.get("type")
    if kind is not None and (not isinstance(kind, str) or kind not in _STEP_TYPES):
        raise WorkflowError(
            f"restart(): from.type must be one of do, sleep, waitForEvent, got {kind!r}"
        )
    return (name, count)


class Instance:
    """A handle on one workflow instance."""

    def __init__(self, engine: Engine, row: InstanceRow) -> None:
        self._engine = engine
        self._row = row

    @property
    def id(self) -> str:
        return self._row.id

    async def status(self) -> dict[str, Any]:
        """``{"status", "output", "error"}``; status is one of Cloudflare's nine."""
        return await self._engine.status(self._row)

    async def pause(self) -> None:
        """Pause: a running instance finishes its current steps first (``waitingForPause``)."""
        await self._engine.control(self._row, "pause")

    async def resume(self) -> None:
        await self._engine.control(self._row, "resume")

    async def terminate(
        self, options: Mapping[str, Any] | None = None, *, rollback: bool = False
    ) -> None:
        """Stop for good; raises CannotTerminateError if it already finished.

        ``terminate({"rollback": True})`` (or ``terminate(rollback=True)``) first runs the
        rollback handlers of the steps it started, newest first (see
        :mod:`dynamic_workflows.core.rollback`); the status then reports ``rollback``."""
        if options:
            if not isinstance(options, Mapping) or set(options) - {"rollback"}:
                raise WorkflowError(f"terminate(): unknown option(s) in {options!r}")
            value = options.get("rollback")
            if value is not None and not isinstance(value, bool):
                raise WorkflowError(f"terminate(): rollback must be true or false, got {value!r}")
            rollback = rollback or bool(value)
        if not isinstance(rollback, bool):
            raise WorkflowError(f"terminate(): rollback must be true or false, got {rollback!r}")
        await self._engine.control(self._row, "terminate", rollback=rollback)

    async def restart(self, options: Mapping[str, Any] | None = None) -> None:
        """Run again from scratch, or ``restart({"from": {"name", "count"?, "type"?}})`` from
        that step: the steps recorded before it keep their results, it and every later one
        execute again."""
        await self._engine.control(self._row, "restart", restart_from=restart_point(options))

    async def send_event(
        self,
        options: Mapping[str, Any] | None = None,
        /,
        *,
        type: str | None = None,
        payload: Any = None,
    ) -> None:
        """Send an event (``send_event(type=..., payload=...)`` or ``send_event({...})``)."""
        if options is not None:
            if not isinstance(options, Mapping):
                raise WorkflowError("send_event() options must be a dict with 'type' and 'payload'")
            type = options.get("type", type)
            payload = options.get("payload", payload)
        await self._engine.send_event(self._row, type, payload)  # type: ignore[arg-type]

    sendEvent = send_event

    async def delete(self) -> None:
        """Remove the instance and everything stored about it."""
        await self._engine.delete(self._row)

    def __repr__(self) -> str:
        return f"<Instance {self._row.workflow}/{self.id}>"


class WorkflowBinding:
    """What ``env.MY_WORKFLOW`` is: ``create``, ``create_batch``, ``get`` and ``delete_batch``.

    ``scope`` partitions instance ids: a binding creates in its scope, and a scoped binding only
    sees the instances created through a binding of the same scope (the dispatch library gives
    each tenant its own). The unscoped binding also finds other scopes' instances by id
    (:meth:`get`).
    """

    def __init__(
        self, engine: Engine, name: str, *, scope: str = "", policy: TenantPolicy | None = None
    ) -> None:
        self._engine = engine
        self.name = name
        self.scope = scope
        self.policy = policy
        """The scope's :class:`~dynamic_workflows.core.tenancy.TenantPolicy` as the platform
        gave it (``with_scope(scope, limits=)``); None: the one stored for the scope, or the
        engine's defaults."""

    async def create(
        self,
        options: Mapping[str, Any] | None = None,
        /,
        *,
        id: str | None = None,
        params: Any = _MISSING,
    ) -> Instance:
        """Create an instance (``create(id=..., params=...)`` or ``create({"id", "params"})``).
        Raises InstanceAlreadyExistsError for an id in use, InvalidInstanceIdError for a bad id."""
        iid, p = _options(options, id, params)
        rows = await self._engine.create(
            self.name, self.scope, [(iid, p)], policy=self.policy, retention=[_retention(options)]
        )
        return Instance(self._engine, rows[0])

    async def create_batch(
        self, batch: Sequence[Mapping[str, Any]] | Mapping[str, Any]
    ) -> list[Instance] | dict[str, list[Any]]:
        """Create up to 100 instances at once.

        The array form ``create_batch([{"id", "params"}, ...])`` (deprecated on Cloudflare,
        still accepted) returns the instances created: ids that exist already are skipped (and
        left out of the result), as is a repeated id within the batch.

        The object form, ``create_batch({"count": n, "params": p})`` (``n`` instances with
        generated ids and the same params) or ``create_batch({"instances": [{"id", "params"},
        ...]})``, returns ``{"created": [Instance, ...], "errors": [{"index", "id", "code",
        "message"}, ...]}``: an entry that was not created (its id exists, or came earlier in the
        batch) is reported by its position instead of being skipped silently."""
        if isinstance(batch, Mapping):
            return await self._create_batch_object(batch)
        if not isinstance(batch, list | tuple):
            raise BatchError("create_batch() takes a list of {'id', 'params'} dicts")
        checked = self._checked_batch(batch)
        items = [_options(item, None, _MISSING) for item in checked]
        rows = await self._engine.create(
            self.name,
            self.scope,
            items,
            batch=True,
            policy=self.policy,
            retention=[_retention(i) for i in checked],
        )
        return [Instance(self._engine, r) for r in rows]

    def _checked_batch(self, batch: Sequence[Any], what: str = "create_batch()") -> Sequence[Any]:
        if not batch:
            raise BatchError(f"{what} got an empty batch")
        limit = self._engine.limits.max_batch
        if len(batch) > limit:
            raise BatchError(f"{what} got {len(batch)} instances; the limit is {limit}")
        return batch

    async def _create_batch_object(self, options: Mapping[str, Any]) -> dict[str, list[Any]]:
        unknown = set(options) - {"count", "params", "instances", "retention"}
        if unknown:
            raise BatchError(f"create_batch() got unknown option(s) {sorted(unknown)}")
        if ("count" in options) == ("instances" in options):
            raise BatchError("create_batch() options need either 'count' or 'instances'")
        items: list[tuple[str | None, Any]]
        own: list[object] = []  # each entry's own retention, if it has one
        if "count" in options:
            count = options["count"]
            limit = self._engine.limits.max_batch
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
                raise BatchError(f"create_batch(): count must be an integer from 1 to {limit}")
            items = [(None, options.get("params"))] * count
        else:
            if "params" in options:
                raise BatchError("create_batch(): params goes in each entry of instances")
            instances = options["instances"]
            if not isinstance(instances, list | tuple):
                raise BatchError("create_batch(): instances must be a list of {'id', 'params'}")
            items = [_options(item, None, _MISSING) for item in self._checked_batch(instances)]
            own = [_retention(item) for item in instances]
        shared = _retention(options)
        retention = [_over(own[i] if i < len(own) else None, shared) for i in range(len(items))]
        rows = await self._engine.create(
            self.name, self.scope, items, batch=True, policy=self.policy, retention=retention
        )
        # Storage answers in input order, without the entries it did not create.
        created: list[Any] = []
        errors: list[Any] = []
        first: dict[str, int] = {}
        pending = iter(rows)
        row = next(pending, None)
        for index, (iid, _) in enumerate(items):
            if iid is not None and iid in first:
                errors.append(
                    {
                        "index": index,
                        "id": iid,
                        "code": InstanceAlreadyExistsError.code,
                        "message": f'(instance.already_exists) Workflow instance id "{iid}" '
                        f"appears earlier in this batch (index {first[iid]})",
                    }
                )
                continue
            if iid is not None:
                first[iid] = index
            if row is not None and (iid is None or row.id == iid):
                created.append(Instance(self._engine, row))
                row = next(pending, None)
            else:
                error = InstanceAlreadyExistsError(str(iid))
                errors.append(
                    {"index": index, "id": iid, "code": error.code, "message": str(error)}
                )
        return {"created": created, "errors": errors}

    createBatch = create_batch

    async def get(self, id: str) -> Instance:
        """The instance ``id``; raises InstanceNotFoundError.

        A scoped binding (a tenant's, see :meth:`with_scope`) sees its own scope only. The
        unscoped one is the dispatcher's own ``env.WORKFLOWS``, the platform's trusted view, as on
        Cloudflare: an id missing from its scope is looked up in every tenant's scope and found
        when exactly one holds it; AmbiguousInstanceError when several do (a tenant's own binding,
        ``wrap_workflow_binding(metadata)``, tells them apart)."""
        try:
            row = await self._engine.get(self.name, self.scope, id)
        except InstanceNotFoundError:
            if self.scope or not isinstance(id, str):
                raise
            matches = await self._engine.queries.find_instances(self.name, id)
            if not matches:
                raise
            if len(matches) > 1:
                raise AmbiguousInstanceError(id, [m.scope for m in matches]) from None
            row = matches[0].row
        return Instance(self._engine, row)

    async def delete_batch(
        self, instance_ids: Sequence[str] | Mapping[str, Any]
    ) -> dict[str, list[dict[str, Any]]]:
        """Delete up to 100 instances and everything stored about them: ``delete_batch(["a",
        "b"])`` (or ``{"instances": [...]}``). Returns ``{"deleted": [{"id"}], "errors": [{"id",
        "code", "message"}]}`` in input order, as Cloudflare's ``deleteBatch``: an id this
        binding cannot see is an error (code 10400), and a repeated id is deleted once and
        reported at each of its positions."""
        ids: Any = instance_ids
        if isinstance(ids, Mapping):
            if set(ids) != {"instances"}:
                raise BatchError("delete_batch() options must be {'instances': [ids]}")
            ids = ids["instances"]
        if isinstance(ids, str) or not isinstance(ids, list | tuple):
            raise BatchError("delete_batch() takes a list of instance ids")
        for iid in self._checked_batch(ids, "delete_batch()"):
            check_instance_id(iid, self._engine.limits)
        failed: dict[str, dict[str, Any] | None] = {}
        for iid in dict.fromkeys(ids):
            try:
                await (await self.get(iid)).delete()
                failed[iid] = None
            except InstanceNotFoundError:
                failed[iid] = {
                    "id": iid,
                    "code": 10400,
                    "message": "workflows.api.error.instance.not_found",
                }
            except AmbiguousInstanceError as exc:
                failed[iid] = {"id": iid, "code": 10400, "message": str(exc)}
        result: dict[str, list[dict[str, Any]]] = {"deleted": [], "errors": []}
        for iid in ids:
            error = failed[iid]
            if error is None:
                result["deleted"].append({"id": iid})
            else:
                result["errors"].append(dict(error))
        return result

    deleteBatch = delete_batch

    def with_scope(
        self, scope: str, *, limits: Mapping[str, Any] | TenantPolicy | None = None
    ) -> WorkflowBinding:
        """The same workflow seen through another id scope (a tenant's own namespace).
        ``limits``: the tenant's policy (fields of :class:`~dynamic_workflows.core.tenancy.
        TenantPolicy`) over the engine's defaults, checked here (a ConfigurationError names the
        field), stored for the scope and enforced on each create."""
        policy = None
        if limits is not None:
            policy = parse_policy(limits, base=self._engine.tenant_defaults)
        return WorkflowBinding(self._engine, self.name, scope=scope, policy=policy)

    def __repr__(self) -> str:
        return f"<WorkflowBinding {self.name}>"
