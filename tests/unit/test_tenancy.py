"""core/tenancy.py alone: policies parsed and merged, the create bucket, weighted turns."""

from __future__ import annotations

import pytest

from dynamic_workflows.core.tenancy import (
    Admission,
    Candidate,
    FairShare,
    TenantPolicy,
    check_live,
    choose,
    parse_policy,
    take_tokens,
)
from dynamic_workflows.errors import ConfigurationError, TenantLimitError


def test_a_policy_merges_over_its_base_and_none_removes_a_cap() -> None:
    base = parse_policy({"max_running": 20, "create_rate": 10})
    assert base == TenantPolicy(max_running=20, create_rate=10.0)
    assert base.burst == 10  # the rate rounded up, by default
    plan = parse_policy({"weight": 3, "max_running": None}, base=base)
    assert plan == TenantPolicy(create_rate=10.0, weight=3)
    assert parse_policy(None, base=base) is base
    assert parse_policy(plan) == plan
    assert TenantPolicy(create_rate=0.5).burst == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_live": 1.5}, "limits.max_live must be an integer of at least 1, got 1.5"),
        ({"max_running": True}, "limits.max_running must be an integer"),
        ({"weight": 0}, "limits.weight must be an integer of at least 1, got 0"),
        ({"create_rate": float("inf")}, "limits.create_rate must be a positive number"),
        ({"create_rate": "5"}, "limits.create_rate must be a positive number"),
        ({"burst": 5}, "limits: unknown field(s) burst"),
        ([1], "limits must be an object, got list"),
    ],
)
def test_bad_policies_name_the_field(data: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_policy(data)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_the_bucket_refills_and_says_when_to_retry() -> None:
    policy = TenantPolicy(create_rate=4.0, create_burst=8)
    bucket = take_tokens(policy, "s", None, None, 8, 100.0)
    assert bucket is not None
    assert bucket.tokens == 0.0
    with pytest.raises(TenantLimitError) as caught:
        take_tokens(policy, "s", bucket.tokens, bucket.at, 2, 100.25)
    assert caught.value.retry_after == pytest.approx(0.25)
    refilled = take_tokens(policy, "s", bucket.tokens, bucket.at, 2, 100.5)
    assert refilled is not None
    assert refilled.tokens == pytest.approx(0.0)
    full = take_tokens(policy, "s", 0.0, 0.0, 1, 1000.0)  # never more than the burst
    assert full is not None
    assert full.tokens == pytest.approx(7.0)
    assert take_tokens(TenantPolicy(), "s", None, None, 10**6, 0.0) is None
    check_live(TenantPolicy(max_live=3), "s", 2, 1)
    with pytest.raises(TenantLimitError, match="max_live of 3"):
        check_live(TenantPolicy(max_live=3), "s", 2, 2)


def _backlog(scope: str, n: int) -> list[Candidate]:
    return [Candidate(i, scope, "wf", float(i)) for i in range(n)]


def test_turns_follow_the_weights_one_claim_at_a_time() -> None:
    share = FairShare()
    weights = {"a": 1, "b": 2, "c": 5}
    got = {"a": 0, "b": 0, "c": 0}
    for _ in range(800):
        candidates = {s: _backlog(s, 3) for s in weights}
        (picked,) = share.pick(candidates, weights, 1, lambda s, c: True)
        got[picked.scope] += 1
    assert got == {"a": 100, "b": 200, "c": 500}


def _turns(share: FairShare, n: int, scopes: tuple[str, ...] = ("a", "b")) -> list[str]:
    return [
        share.pick({s: _backlog(s, 5) for s in scopes}, {}, 1, lambda s, c: True)[0].scope
        for _ in range(n)
    ]


def test_a_scope_back_from_idle_goes_first_for_at_most_the_lag() -> None:
    share = FairShare(lag=10)
    for _ in range(1000):  # a alone for a long while: b could bank 1000 turns, gets 10
        share.pick({"a": _backlog("a", 1)}, {}, 1, lambda s, c: True)
    turns = _turns(share, 40)
    assert turns[:10] == ["b"] * 10
    assert turns[10:].count("b") == 15  # then turn about
    plain = FairShare(lag=0)  # no lag: turns from the first
    for _ in range(1000):
        plain.pick({"a": _backlog("a", 1)}, {}, 1, lambda s, c: True)
    assert _turns(plain, 10).count("b") == 5


def test_pausing_gains_a_scope_nothing() -> None:
    """A scope served just now that pauses for a claim comes back with its own pass, not the
    lag's: stopping and starting cannot jump the queue."""
    share = FairShare(lag=10)
    _turns(share, 100)  # a and b in turns: equal passes
    share.pick({"a": _backlog("a", 1)}, {}, 1, lambda s, c: True)  # b absent for one claim
    turns = _turns(share, 20)
    assert turns.count("b") == 10  # turns at once, no head start
    assert turns[:3] != ["b", "b", "b"]


def test_the_lag_is_bounded_by_the_scopes_weight_in_turns() -> None:
    share = FairShare(lag=10)
    for _ in range(1000):
        share.pick({"a": _backlog("a", 1)}, {}, 1, lambda s, c: True)
    picks = [
        share.pick({"a": _backlog("a", 5), "b": _backlog("b", 5)}, {"b": 2}, 1, lambda s, c: True)[
            0
        ].scope
        for _ in range(20)
    ]
    assert picks[:20] == ["b"] * 20  # 10 turns of pass at weight 2: 20 claims


def test_caps_skip_a_scope_without_costing_it_its_turn() -> None:
    admission = Admission({"a": 2}, {}, {"a": 1}, {})
    picked = choose(FairShare(), {"a": _backlog("a", 5), "b": _backlog("b", 5)}, {}, 6, admission)
    assert [c.scope for c in picked].count("a") == 1
    assert len(picked) == 6
    first_come = choose(None, {"a": _backlog("a", 3), "b": _backlog("b", 3)}, {}, 3, None)
    assert [c.wake_at for c in first_come] == [0.0, 0.0, 1.0]
