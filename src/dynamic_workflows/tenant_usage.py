"""Tenants as the read side sees them: each scope's instances, steps and policy.

A tenant is a *scope* (the dispatch library's hash of its dispatcher metadata); its instances
carry the metadata in their params, and :class:`TenantUsage` decodes it from the newest one
(the host names the tenant from it). Statuses are the reported ones (a parked run is
``waiting``), as everywhere in :mod:`.queries`, which builds these
(``engine.queries.tenant_usage``).

**Policy.** Per-tenant caps (live and running instances, create rate) and a weight are another
piece's work; what the read side needs of them is :class:`TenantPolicy`: a scope's limits (None
when it has none) and the creates refused or delayed per scope. Until an engine has one,
``engine.queries.tenant_policy`` is None and usage shows no limits and nothing throttled::

    engine.queries.tenant_policy = my_policy   # anything with these two methods
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .core.transitions import FINITE_STATUSES, Status
from .dispatch import METADATA_KEY
from .storage.base import ScopeUsage

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "TenantPolicy",
    "TenantUsage",
    "TenantUsagePage",
    "dispatcher_metadata_of",
    "read_tenant_usage",
]


class TenantPolicy(Protocol):
    """What the read side asks of the per-tenant policy (caps, weight)."""

    async def limits(self, scope: str) -> dict[str, Any] | None:
        """The limits set for ``scope`` (e.g. ``{"max_running": 10, "max_live": 1000,
        "creates_per_second": 50, "weight": 2}``), or None when it has none."""
        ...

    async def throttled(self) -> Mapping[str, int]:
        """Creates refused or delayed by a cap so far, per scope (scopes with none may be
        absent)."""
        ...


_FAR = 2**62


class _Envelope(msgspec.Struct):
    # Only the metadata is decoded: the tenant's own params may be large.
    metadata: Any = msgspec.field(default=None, name=METADATA_KEY)


_envelope = msgspec.json.Decoder(_Envelope)


def dispatcher_metadata_of(params_json: bytes) -> Any:
    """The dispatcher metadata in an instance's params (JSON), or None (no dispatch
    envelope: created through the raw binding)."""
    try:
        return _envelope.decode(params_json).metadata
    except (msgspec.ValidationError, msgspec.DecodeError):  # params that are not an object
        return None


class TenantUsage(msgspec.Struct, frozen=True):
    """One tenant (scope): its instances by reported status, its steps, its policy."""

    scope: str
    metadata: Any
    """Its dispatcher metadata, from its newest instance (None for the unscoped instances)."""
    by_status: dict[str, int]
    """Instances per reported status (statuses with none are absent)."""
    steps: int
    """Steps (journal entries) its instances recorded; 0 when read without them."""
    last_created_at: float
    """When its newest instance was created (epoch seconds)."""
    last_updated_at: float
    """The latest change to one of its instances."""
    created: int = 0
    """Instances this engine created for it since it started."""
    steps_committed: int = 0
    """Step results this engine committed for it since it started."""
    throttled: int = 0
    """Creates its caps refused or delayed (0 without a policy)."""
    limits: dict[str, Any] | None = None
    """Its limits (None: none set, or no policy)."""

    @property
    def instances(self) -> int:
        """Its instances in all."""
        return sum(self.by_status.values())

    @property
    def live(self) -> int:
        """Its instances not finished."""
        return sum(n for s, n in self.by_status.items() if s not in FINITE_STATUSES)

    @property
    def finished(self) -> int:
        """Its instances complete, errored or terminated."""
        return self.instances - self.live

    @property
    def running(self) -> int:
        """Its instances running now."""
        return self.by_status.get(Status.RUNNING, 0)

    @property
    def waiting(self) -> int:
        """Its instances waiting (a sleep, an event, a retry's back-off)."""
        return self.by_status.get(Status.WAITING, 0)


class TenantUsagePage(msgspec.Struct, frozen=True):
    """A page of tenants in the order asked, and what every matching tenant adds up to."""

    tenants: list[TenantUsage]
    total: int
    """Tenants matching in all."""
    by_status: dict[str, int]
    """Instances per reported status of every matching tenant together."""
    steps: int
    """Steps of every matching tenant together (0 when read without them)."""
    offset: int
    limit: int


async def read_tenant_usage(
    engine: Engine,
    workflow: str | None,
    *,
    order: str,
    limit: int,
    offset: int,
    unscoped: bool,
    steps: bool,
    limits: Callable[[str], Awaitable[dict[str, Any] | None]],
    throttled: Mapping[str, int],
) -> TenantUsagePage:
    """``engine.queries.tenant_usage``'s page (arguments checked there): one storage read,
    parked runs reported ``waiting``, the engine's counters, ``limits(scope)`` and
    ``throttled`` per scope from the policy."""
    for _ in range(3):
        stored = await engine.storage.scope_usage(
            workflow,
            order=order,
            limit=limit,
            # Past any number of scopes there can be, and within what SQL can take (int64).
            offset=min(offset, _FAR),
            unscoped=unscoped,
            steps=steps,
        )
        parked = await _parked_by_scope(
            engine, workflow, unscoped, stored.by_status.get(Status.RUNNING, 0)
        )
        if parked is not None:
            break
        # A run moved between the two reads (on a shared database a parked run's row turns
        # `waiting` when its park commits): read again, or it would be counted as running.
    else:
        parked = {}
    totals = dict(stored.by_status)
    for n in parked.values():
        _move_parked(totals, n)
    tenants = []
    for usage in stored.scopes:
        by_status = dict(usage.by_status)
        _move_parked(by_status, parked.get(usage.scope, 0))
        tenants.append(_tenant(engine, usage, by_status, throttled, await limits(usage.scope)))
    return TenantUsagePage(tenants, stored.total, totals, stored.steps, offset, limit)


def _tenant(
    engine: Engine,
    usage: ScopeUsage,
    by_status: dict[str, int],
    throttled: Mapping[str, int],
    limits: dict[str, Any] | None,
) -> TenantUsage:
    scope = usage.scope
    counters = engine.counters
    return TenantUsage(
        scope=scope,
        metadata=dispatcher_metadata_of(usage.sample_params) if scope else None,
        by_status=by_status,
        steps=usage.steps,
        last_created_at=usage.last_created_at,
        last_updated_at=usage.last_updated_at,
        created=counters.created_by_scope.get(scope, 0),
        steps_committed=counters.steps_by_scope.get(scope, 0),
        throttled=throttled.get(scope, 0),
        limits=limits,
    )


async def _parked_by_scope(
    engine: Engine, workflow: str | None, unscoped: bool, running: int
) -> dict[str, int] | None:
    """Parked runs (stored ``running``, reported ``waiting``) per scope, of the ``running``
    rows counted; None when the running rows are not those (one moved meanwhile)."""
    if not running or not engine.parked_runs():
        return {}
    # Running rows are live runs: few (at most concurrency + max_warm per engine).
    stored = await engine.storage.count_instances(workflow)
    rows = [
        row
        for row in await engine.storage.list_instances(
            workflow, status=Status.RUNNING, limit=stored.get(Status.RUNNING, 0) + 1
        )
        if unscoped or row.scope
    ]
    if len(rows) != running:
        return None
    parked: dict[str, int] = {}
    for row in rows:
        if engine.reported_status(row) == Status.WAITING:
            parked[row.scope] = parked.get(row.scope, 0) + 1
    return parked


def _move_parked(by_status: dict[str, int], parked: int) -> None:
    """Report ``parked`` of the ``running`` instances counted in ``by_status`` as ``waiting``."""
    if not parked:
        return
    by_status[Status.RUNNING] -= parked
    if not by_status[Status.RUNNING]:
        del by_status[Status.RUNNING]
    by_status[Status.WAITING] = by_status.get(Status.WAITING, 0) + parked
