"""Per-tenant controls and fair claiming, decided once for every backend (no I/O here).

A tenant is a *scope* (the hash of its dispatcher metadata, :func:`dynamic_workflows.dispatch.
scope_of`). The platform gives each a :class:`TenantPolicy`, in the form of Inngest's
concurrency keys and Temporal's fairness keys and weights, reduced to what an operator asks for:

``max_running``
    at most that many instances of the tenant hold a run slot at once. A slot is held while the
    instance runs (``running``, ``waitingForPause``) or is parked warm in a node's memory for a
    wake-up at most ``warm_horizon`` away (5 s by default: it would only be claimed again at
    once). Hibernated instances (``waiting`` on a timer or an event, ``queued``, ``paused``) hold
    none: extra instances stay queued and start as others finish or hibernate.
``max_live``
    at most that many instances that are not finished (``complete``, ``errored``,
    ``terminated``) exist at once; a create beyond it is refused.
``create_rate`` / ``create_burst``
    a token bucket: ``create_rate`` instances per second on average, at most ``create_burst``
    at once (default: the rate, rounded up). A create beyond it is refused with
    :class:`~dynamic_workflows.errors.TenantLimitError` naming the limit and when to retry
    (HTTP 429 where an HTTP answer is made). A batch takes as many tokens as it has items, all
    or nothing.
``weight``
    the tenant's share of claims when several have due work: a tenant of weight 3 is claimed
    three times as often as one of weight 1 (a backlog only delays its own tenant).

Unset caps (None) mean no cap. The policy is resolved when an instance is created (the
dispatcher's ``limits``, over the project's defaults) and stored on the tenant's row, so that
every node enforces the same caps; the backends check caps and take tokens in the transaction
that creates or claims, under a lock of the tenant's row, so a cap is never exceeded by one.

:class:`FairShare` orders claims across tenants: stride scheduling (Waldspurger & Weihl, 1995)
over scopes, the deterministic form of weighted fair queueing: each scope has a *pass*; the scope
with the lowest is served next and its pass advances by ``1 / weight``. A scope that comes back
after having nothing due starts at most :data:`RETURN_LAG` turns behind the current virtual
time, as Linux's CFS places a task that wakes from sleep: a tenant with occasional work (100
instances now and then) is served ahead of another's standing backlog for up to that many
claims, so a backlog only delays its own tenant, while idling banks no more than that; a scope
served recently keeps its pass, so pausing gains it nothing.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from typing import Any, TypeVar

import msgspec

from ..errors import ConfigurationError, TenantLimitError

__all__ = [
    "DEFAULT_POLICY",
    "MAX_WEIGHT",
    "POLICY_FIELDS",
    "RETURN_LAG",
    "Admission",
    "Bucket",
    "Candidate",
    "FairShare",
    "TenantPolicy",
    "TenantState",
    "capped",
    "check_live",
    "choose",
    "first_come",
    "left_over",
    "parse_policy",
    "take_tokens",
]

MAX_WEIGHT = 10_000
POLICY_FIELDS = ("max_running", "max_live", "create_rate", "create_burst", "weight")
"""The fields of a policy, as written in wrangler config and in ``limits=``."""

T = TypeVar("T")


class TenantPolicy(msgspec.Struct, frozen=True):
    """The controls of one tenant (module docstring). Build it checked with
    :func:`parse_policy`; ``TenantPolicy()`` is no cap at all, weight 1."""

    max_running: int | None = None
    max_live: int | None = None
    create_rate: float | None = None
    create_burst: int | None = None
    weight: int = 1

    @property
    def burst(self) -> int | None:
        """The bucket's size: ``create_burst``, or the rate rounded up."""
        if self.create_rate is None:
            return None
        if self.create_burst is not None:
            return self.create_burst
        return max(1, math.ceil(self.create_rate))

    def as_dict(self) -> dict[str, Any]:
        """The fields, as written in config (None: no cap)."""
        return {name: getattr(self, name) for name in POLICY_FIELDS}


DEFAULT_POLICY = TenantPolicy()


class TenantState(msgspec.Struct, frozen=True):
    """A tenant's stored row: its policy (as last resolved) and its create bucket."""

    scope: str
    policy: TenantPolicy
    tokens: float | None = None
    tokens_at: float | None = None


def _count(value: object, where: str, field: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(
            f"{where}.{field} must be an integer of at least {low}, got {value!r}"
        )
    if high is not None and value > high:
        raise ConfigurationError(f"{where}.{field} must be at most {high}, got {value!r}")
    return value


def parse_policy(
    data: Mapping[str, Any] | TenantPolicy | None,
    *,
    base: TenantPolicy = DEFAULT_POLICY,
    where: str = "limits",
) -> TenantPolicy:
    """``data``'s fields over ``base`` (a field absent keeps base's; ``None`` removes a cap),
    checked: a ConfigurationError names ``where.field``, what it must be and what it got."""
    if data is None:
        return base
    if isinstance(data, TenantPolicy):
        data = data.as_dict()
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{where} must be an object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(POLICY_FIELDS))
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown field(s) {', '.join(map(str, unknown))} "
            f"(known: {', '.join(POLICY_FIELDS)})"
        )
    merged = base.as_dict()
    for field in ("max_running", "max_live", "create_burst"):
        if field in data:
            v = data[field]
            merged[field] = None if v is None else _count(v, where, field, 1)
    if "weight" in data:
        merged["weight"] = _count(data["weight"], where, "weight", 1, MAX_WEIGHT)
    if "create_rate" in data:
        rate = data["create_rate"]
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or rate <= 0
        ):
            raise ConfigurationError(
                f"{where}.create_rate must be a positive number (instances per second), "
                f"got {rate!r}"
            )
        merged["create_rate"] = None if rate is None else float(rate)
    return TenantPolicy(**merged)


# -- the create bucket ------------------------------------------------------------------------


class Bucket(msgspec.Struct, frozen=True):
    """A tenant's create tokens after a take: store them with ``at``."""

    tokens: float
    at: float


def take_tokens(
    policy: TenantPolicy,
    scope: str,
    tokens: float | None,
    tokens_at: float | None,
    n: int,
    now: float,
) -> Bucket | None:
    """Take ``n`` create tokens from the stored bucket (None: full), or raise
    :class:`TenantLimitError` naming the rate, the burst and when to retry. None when the
    policy has no rate (nothing to store)."""
    rate, burst = policy.create_rate, policy.burst
    if rate is None or burst is None:
        return None
    if tokens is None or tokens_at is None:
        have = float(burst)
    else:
        have = min(float(burst), tokens + max(0.0, now - tokens_at) * rate)
    if n > burst:
        raise TenantLimitError(
            scope,
            "create_burst",
            burst,
            f"a batch of {n} instances is more than the tenant's create burst of {burst} "
            f"(create_rate {rate:g}/s)",
            retry_after=None,
        )
    if n > have + 1e-9:
        wait = (n - have) / rate
        raise TenantLimitError(
            scope,
            "create_rate",
            rate,
            f"the tenant creates instances faster than its create_rate of {rate:g}/s "
            f"(burst {burst}); retry in {wait:.3f} s",
            retry_after=wait,
        )
    return Bucket(have - n, now)


def check_live(policy: TenantPolicy, scope: str, live: int, n: int) -> None:
    """Refuse ``n`` more instances when ``live`` unfinished ones plus them pass ``max_live``."""
    cap = policy.max_live
    if cap is not None and live + n > cap:
        raise TenantLimitError(
            scope,
            "max_live",
            cap,
            f"the tenant has {live} unfinished instances; creating {n} more would pass its "
            f"max_live of {cap}",
            retry_after=None,
        )


# -- fair claiming ----------------------------------------------------------------------------

RETURN_LAG = 100.0
"""Turns (claims at weight 1) a scope coming back from idle may be served ahead of the current
virtual time (module docstring). Measured with ``bench/noisy.py`` (tenant B creating 100
instances while tenant A floods 50,000): without it B's p99 was 2-3x what it was with it on
PostgreSQL, where B's runs shared every claim with A's from the first."""


class FairShare:
    """Weighted fair order of claims across scopes (module docstring). One per storage object:
    its passes carry the shares from one claim to the next."""

    def __init__(self, lag: float = RETURN_LAG) -> None:
        self._pass: dict[str, float] = {}
        self._vtime = 0.0
        self._lag = lag

    def pick(
        self,
        candidates: Mapping[str, Sequence[T]],
        weights: Mapping[str, int],
        room: int,
        admit: Callable[[str, T], bool],
    ) -> list[T]:
        """Up to ``room`` of ``candidates`` (per scope, earliest first), scope by scope in
        weighted turns. ``admit(scope, item)`` is asked before each is taken (the caps: False
        skips the item, and counts nothing). A scope absent from ``candidates`` keeps its pass
        until the lag would place it there anyway."""
        floor = self._vtime - self._lag  # where a scope coming back from idle starts, at best
        for scope in [s for s in self._pass if s not in candidates and self._pass[s] <= floor]:
            del self._pass[scope]
        heap: list[tuple[float, str]] = []
        for scope, items in candidates.items():
            if items:
                p = max(self._pass.get(scope, floor), floor)
                self._pass[scope] = p
                heap.append((p, scope))
        heapq.heapify(heap)
        cursor = dict.fromkeys(candidates, 0)
        out: list[T] = []
        while heap and len(out) < room:
            p, scope = heapq.heappop(heap)
            self._vtime = max(self._vtime, p)  # never back: a lagged pass is not "now"
            items = candidates[scope]
            i = cursor[scope]
            while i < len(items) and not admit(scope, items[i]):
                i += 1
            if i == len(items):
                continue  # nothing more this scope may take now: it waits, without credit
            out.append(items[i])
            cursor[scope] = i + 1
            p += 1.0 / max(1, weights.get(scope, 1))
            self._pass[scope] = p
            if i + 1 < len(items):
                heapq.heappush(heap, (p, scope))
        return out


def first_come(
    candidates: Mapping[str, Iterable[T]],
    room: int,
    admit: Callable[[str, T], bool],
    key: Callable[[T], Any],
) -> list[T]:
    """Up to ``room`` of ``candidates``, earliest first whatever the scope (fairness off), each
    admitted by ``admit(scope, item)`` as :meth:`FairShare.pick` does."""
    merged = sorted(
        ((scope, item) for scope, items in candidates.items() for item in items),
        key=lambda pair: key(pair[1]),
    )
    out: list[T] = []
    for scope, item in merged:
        if len(out) >= room:
            break
        if admit(scope, item):
            out.append(item)
    return out


class Candidate(msgspec.Struct, frozen=True):
    """A due instance a claim may take."""

    pk: int
    scope: str
    workflow: str
    wake_at: float


class Admission:
    """The caps of one claim: the runs that hold a slot now, per scope and per workflow, and
    the caps; :meth:`admit` counts each candidate taken."""

    def __init__(
        self,
        max_running: Mapping[str, int | None],
        workflow_limits: Mapping[str, int],
        held_by_scope: Mapping[str, int],
        held_by_workflow: Mapping[str, int],
    ) -> None:
        self._max_running = max_running
        self._workflow_limits = workflow_limits
        self._scope = dict(held_by_scope)
        self._workflow = dict(held_by_workflow)

    def admit(self, scope: str, c: Candidate) -> bool:
        """Whether ``c`` may start: neither its scope nor its workflow is at its cap."""
        cap = self._max_running.get(scope)
        if cap is not None and self._scope.get(scope, 0) >= cap:
            return False
        wcap = self._workflow_limits.get(c.workflow)
        if wcap is not None and self._workflow.get(c.workflow, 0) >= wcap:
            return False
        self._scope[scope] = self._scope.get(scope, 0) + 1
        self._workflow[c.workflow] = self._workflow.get(c.workflow, 0) + 1
        return True


def capped(
    candidates: Mapping[str, Sequence[Candidate]],
    max_running: Mapping[str, int | None],
    workflow_limits: Mapping[str, int],
) -> tuple[list[str], list[str]]:
    """The scopes and workflows among ``candidates`` that have a cap (whose slots a claim must
    count, under a lock), each sorted."""
    scopes = sorted(s for s, items in candidates.items() if items and max_running.get(s))
    workflows = sorted(
        {c.workflow for items in candidates.values() for c in items} & set(workflow_limits)
    )
    return scopes, workflows


def left_over(candidates: Mapping[str, Sized], picked: Iterable[Candidate]) -> set[str]:
    """The scopes that still have candidates after ``picked`` were taken: those with due work
    left (the backlog of :mod:`.ingest`). A claim reads one candidate more than its room per
    scope, so that a scope whose due work just fits is not counted."""
    left = {scope: len(items) for scope, items in candidates.items()}
    for c in picked:
        left[c.scope] -= 1
    return {scope for scope, n in left.items() if n > 0}


def choose(
    share: FairShare | None,
    candidates: Mapping[str, Sequence[Candidate]],
    weights: Mapping[str, int],
    room: int,
    admission: Admission | None,
) -> list[Candidate]:
    """What a claim takes: ``share``'s weighted turns (None: earliest first), under
    ``admission``'s caps (None: no cap concerns these candidates)."""

    def admit(scope: str, c: Candidate) -> bool:
        return admission is None or admission.admit(scope, c)

    if share is None:
        return first_come(candidates, room, admit, key=lambda c: (c.wake_at, c.pk))
    return share.pick(candidates, weights, room, admit)
