"""Tenants as the explorer shows them: who an instance belongs to, and counts per tenant.

An instance created through the dispatch library carries its tenant's dispatcher metadata in its
params (``params["__dispatcherMetadata"]``), and its scope is a hash of that metadata. The hash
tells tenants apart but names nobody, so listings show the metadata's readable form
(:func:`tenant_label`): the value of a key that names the tenant (``tenant``, ``tenantId``,
``tenant_id``, ..., then ``id`` or ``name``), else the metadata as compact JSON.

:func:`tenant_counts` finds every scope of a workflow and counts its instances by status. The
storage protocol has no "group by scope", so it reads the listing (newest first, through
``engine.queries``) up to :data:`SCAN_LIMIT` instances and says when it stopped short.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..core.codec import encode
from ..dispatch import METADATA_KEY
from ..queries import MAX_LIMIT, InstanceView, Queries

__all__ = [
    "SCAN_LIMIT",
    "TenantCount",
    "TenantCounts",
    "dispatcher_metadata",
    "tenant_counts",
    "tenant_label",
]

SCAN_LIMIT = 20_000
"""The most instances :func:`tenant_counts` reads (the newest); past it the counts say so."""

_NAMING_KEYS = ("tenant", "tenantid", "tenantname", "id", "name")
"""Keys whose value names a tenant, best first, compared in lower case without ``_``/``-``."""


class _Envelope(msgspec.Struct):
    # Only the metadata is decoded: the tenant's own params may be large.
    metadata: Any = msgspec.field(default=None, name=METADATA_KEY)


_envelope = msgspec.json.Decoder(_Envelope)


def dispatcher_metadata(instance: InstanceView) -> Any:
    """The dispatcher metadata in ``instance``'s params, or None (no envelope, raw binding)."""
    try:
        return _envelope.decode(instance.params_json).metadata
    except (msgspec.ValidationError, msgspec.DecodeError):  # params that are not an object
        return None


def tenant_label(metadata: Any) -> str | None:
    """The readable form of a tenant's dispatcher metadata (None for no metadata)."""
    if metadata is None:
        return None
    if isinstance(metadata, dict):
        named = {str(k).lower().replace("_", "").replace("-", ""): v for k, v in metadata.items()}
        for key in _NAMING_KEYS:
            value = named.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
    if isinstance(metadata, str) and metadata:
        return metadata
    return encode(metadata).decode()


class TenantCount(msgspec.Struct):
    """One scope of a workflow: its tenant and its instances by reported status."""

    scope: str
    metadata: Any
    tenant: str | None
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        """Its instances in all."""
        return sum(self.by_status.values())


class TenantCounts(msgspec.Struct):
    """Every scope of a workflow found among its newest ``scanned`` instances, most
    instances first; ``complete`` is False when the workflow has more than were read."""

    tenants: list[TenantCount]
    scanned: int
    complete: bool


async def tenant_counts(
    queries: Queries, workflow: str, *, limit: int = SCAN_LIMIT
) -> TenantCounts:
    """Instances of ``workflow`` per scope and reported status, read from its newest ``limit``."""
    found: dict[str, TenantCount] = {}
    seen: set[tuple[str, str]] = set()
    offset = 0
    total = 0
    while offset < limit:
        page = await queries.list_instances(
            workflow, limit=min(MAX_LIMIT, limit - offset), offset=offset
        )
        total = page.total
        for view in page.instances:
            # Instances created while the pages are read shift the later pages: each one once.
            if (view.scope, view.id) in seen:
                continue
            seen.add((view.scope, view.id))
            entry = found.get(view.scope)
            if entry is None:
                metadata = dispatcher_metadata(view) if view.scope else None
                entry = found[view.scope] = TenantCount(
                    view.scope, metadata, tenant_label(metadata), {}
                )
            entry.by_status[view.status] = entry.by_status.get(view.status, 0) + 1
        offset += len(page.instances)
        if len(page.instances) < page.limit:
            break
    tenants = sorted(found.values(), key=lambda t: (-t.total, t.tenant or "", t.scope))
    return TenantCounts(tenants, len(seen), complete=offset >= total)
