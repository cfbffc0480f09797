"""Tenants as the explorer shows them: who an instance belongs to, and each tenant's usage.

An instance created through the dispatch library carries its tenant's dispatcher metadata in its
params (``params["__dispatcherMetadata"]``), and its scope is a hash of that metadata. The hash
tells tenants apart but names nobody, so listings show the metadata's readable form
(:func:`tenant_label`): the value of a key that names the tenant (``tenant``, ``tenantId``,
``tenant_id``, ..., then ``id`` or ``name``), else the metadata as compact JSON.

A tenant's usage (its instances by status, steps, this node's counters, its limits and
throttled creates) is ``engine.queries.tenant_usage``, one storage read per page however many
instances there are; :func:`tenant_json` is how the admin API (``/tenants``,
``/workflows/:name/tenants``) writes one, and :func:`usage_info` the page's ``result_info``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..core.codec import encode
from ..queries import InstanceView
from ..tenant_usage import TenantUsage, TenantUsagePage, dispatcher_metadata_of

__all__ = ["dispatcher_metadata", "tenant_json", "tenant_label", "usage_info"]

_NAMING_KEYS = ("tenant", "tenantid", "tenantname", "id", "name")
"""Keys whose value names a tenant, best first, compared in lower case without ``_``/``-``."""


def dispatcher_metadata(instance: InstanceView) -> Any:
    """The dispatcher metadata in ``instance``'s params, or None (no envelope, raw binding)."""
    return dispatcher_metadata_of(instance.params_json)


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


def tenant_json(usage: TenantUsage, iso: Callable[[float], str | None]) -> dict[str, Any]:
    """One tenant for the admin API (``iso``: how it writes times)."""
    return {
        "scope": usage.scope,
        "tenant": tenant_label(usage.metadata),
        "metadata": usage.metadata,
        "instances": usage.by_status,
        "total": usage.instances,
        "live": usage.live,
        "running": usage.running,
        "waiting": usage.waiting,
        "finished": usage.finished,
        "steps": usage.steps,
        "last_created_on": iso(usage.last_created_at),
        "last_active_on": iso(usage.last_updated_at),
        # This node's counters since it started.
        "created": usage.created,
        "steps_committed": usage.steps_committed,
        "throttled": usage.throttled,
        "limits": usage.limits,
    }


def usage_info(page: TenantUsagePage, order: str) -> dict[str, Any]:
    """A page's ``result_info``: its place in the whole, and every tenant's totals."""
    per_page = page.limit
    return {
        "count": len(page.tenants),
        "total_count": page.total,
        "page": page.offset // per_page + 1,
        "per_page": per_page,
        "total_pages": max(1, math.ceil(page.total / per_page)),
        "order": order,
        "totals": {"instances": page.by_status, "steps": page.steps},
    }
