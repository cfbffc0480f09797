"""The instance state machine, tested directly: no storage, no engine.

The contract suite (tests/contract) checks that every backend applies these answers; here the
answers themselves are pinned, action by action and status by status, and properties that
hold for any sequence of actions are checked with hypothesis.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamic_workflows.core import transitions as t
from dynamic_workflows.core.journal import (
    ErrorInfo,
    JournalEntry,
    RollbackOutcome,
    StepKind,
    StepState,
)
from dynamic_workflows.core.transitions import UNSET, Status

NOW = 1_000.0
ERR = ErrorInfo("E", "m")
LIVE = sorted(t.ACTIVE_STATUSES)
NOT_LIVE = [s for s in Status.ALL if s not in t.ACTIVE_STATUSES]
FINITE = sorted(t.FINITE_STATUSES)


def state(status: str, generation: int = 3, wake_at: float | None = None) -> t.State:
    return t.State(status, generation, wake_at, started_at=10.0)


def waiting(name: str, count: int, deadline: float | None, event_type: str = "go") -> JournalEntry:
    return JournalEntry(
        name, count, StepKind.WAIT, StepState.WAITING, wake_at=deadline, event_type=event_type
    )


# -- control ------------------------------------------------------------------------------------


def test_terminate_with_rollback_marks_the_row_and_the_ends_clear_it() -> None:
    marked = t.control(state(Status.WAITING, wake_at=5.0), "terminate_rollback", NOW).change
    assert marked.rollback == t.ROLLING_BACK
    assert marked.wake_at == NOW
    # A plain terminate meanwhile ends it at once and records that it stopped the phase (of
    # either kind); without a phase on, it leaves no rollback. A restart forgets it.
    for on in (t.ROLLING_BACK, t.ROLLING_BACK_AFTER_ERROR):
        stopped = t.control(state(Status.QUEUED), "terminate", NOW, rollback=on).change
        assert (stopped.status, stopped.rollback) == (Status.TERMINATED, t.ROLLBACK_STOPPED)
    assert t.control(state(Status.QUEUED), "terminate", NOW).change.rollback is None
    done = RollbackOutcome("complete")
    finished = t.control(state(Status.COMPLETE), "terminate", NOW, rollback=done)
    assert finished.change == t.NO_CHANGE
    assert t.control(state(Status.QUEUED), "restart", NOW).change.rollback is None
    ended = t.finish_run(
        state(Status.RUNNING), 3, Status.TERMINATED, None, None, NOW, RollbackOutcome("complete")
    )
    assert ended is not None
    assert ended.rollback == RollbackOutcome("complete")
    plain = t.finish_run(state(Status.RUNNING), 3, Status.ERRORED, None, ERR, NOW)
    assert plain is not None
    assert plain.rollback is None


def test_begin_rollback_marks_a_live_run_only() -> None:
    begun = t.begin_rollback(state(Status.RUNNING), 3, NOW)
    assert begun is not None
    assert begun.updates() == {"updated_at": NOW, "rollback": t.ROLLING_BACK_AFTER_ERROR}
    assert (
        t.ROLLING_BACK_AFTER_ERROR.as_dict() == t.ROLLING_BACK.as_dict() == {"outcome": "running"}
    )
    assert t.ROLLING_BACK_AFTER_ERROR != t.ROLLING_BACK  # (a resumed run must tell them apart)
    assert t.begin_rollback(state(Status.WAITING_FOR_PAUSE), 3, NOW) is not None
    assert t.begin_rollback(state(Status.RUNNING), 2, NOW) is None
    assert t.begin_rollback(state(Status.ERRORED), 3, NOW) is None
    assert t.begin_rollback(None, 3, NOW) is None
    assert not t.rolling_back(None)
    assert not t.rolling_back(RollbackOutcome("complete"))


# (status before, action) -> status after; every pair not listed changes nothing.
MOVES = {
    (Status.QUEUED, "pause"): Status.PAUSED,
    (Status.WAITING, "pause"): Status.PAUSED,
    (Status.RUNNING, "pause"): Status.WAITING_FOR_PAUSE,
    (Status.PAUSED, "resume"): Status.QUEUED,
    (Status.WAITING_FOR_PAUSE, "resume"): Status.RUNNING,
    **{(s, "terminate"): Status.TERMINATED for s in Status.ALL if s not in t.FINITE_STATUSES},
    **{(s, "restart"): Status.QUEUED for s in Status.ALL},
    # A terminate with rollback queues a run that rolls back, then terminates (finish_run).
    **{(s, "terminate_rollback"): Status.QUEUED for s in Status.ALL if s not in t.FINITE_STATUSES},
}


@pytest.mark.parametrize("action", t.CONTROL_ACTIONS)
@pytest.mark.parametrize("before", Status.ALL)
def test_control_moves_each_status_as_the_table_says(before: str, action: str) -> None:
    outcome = t.control(state(before, wake_at=5.0), action, NOW)
    after = MOVES.get((before, action), before)
    bumped = action == "restart" or (
        action in ("terminate", "terminate_rollback") and before not in t.FINITE_STATUSES
    )
    assert outcome.result == t.ControlResult(before, after, 4 if bumped else 3)
    if (before, action) not in MOVES:
        assert outcome.change == t.Change()
        assert outcome.truncate is None
        return
    updates = outcome.change.updates()
    assert updates["status"] == after
    assert updates["updated_at"] == NOW
    assert updates.get("generation", 3) == outcome.result.generation
    if after in (Status.PAUSED, Status.TERMINATED):
        assert updates["wake_at"] is None
    elif after == Status.QUEUED:
        assert updates["wake_at"] == NOW
    else:  # running <-> waitingForPause: a pending wake-up stays
        assert "wake_at" not in updates
    if after == Status.TERMINATED:
        assert updates["ended_at"] == NOW


def test_restart_clears_the_run_and_the_journal() -> None:
    outcome = t.control(state(Status.COMPLETE), "restart", NOW)
    assert outcome.change.updates() == {
        "status": Status.QUEUED,
        "generation": 4,
        "wake_at": NOW,
        "output": None,
        "error": None,
        "started_at": None,
        "ended_at": None,
        "updated_at": NOW,
        "rollback": None,
    }
    assert outcome.truncate == t.Truncate(None)
    assert outcome.drop_consumed_events


def test_restart_from_a_recorded_step_keeps_what_came_before_and_the_events() -> None:
    outcome = t.control(
        state(Status.ERRORED), "restart", NOW, restart_from=("two", 1), step_recorded=True
    )
    assert outcome.truncate == t.Truncate(("two", 1))
    assert not outcome.drop_consumed_events
    assert outcome.result.after == Status.QUEUED


def test_restart_from_a_step_never_recorded_is_a_full_restart() -> None:
    outcome = t.control(
        state(Status.ERRORED), "restart", NOW, restart_from=("nope", 1), step_recorded=False
    )
    assert outcome.truncate == t.Truncate(None)
    assert outcome.drop_consumed_events


def test_unknown_actions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown control action 'explode'"):
        t.control(state(Status.RUNNING), "explode", NOW)
    with pytest.raises(ValueError, match="unknown control action"):
        t.check_control_action("Pause")
    for action in t.CONTROL_ACTIONS:
        t.check_control_action(action)


# -- claim, recover -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", Status.ALL)
def test_claim_takes_queued_and_waiting_only(status: str) -> None:
    change = t.claim(state(status, wake_at=5.0), NOW)
    if status not in (Status.QUEUED, Status.WAITING):
        assert change is None
        return
    assert change is not None
    assert change.updates() == {
        "status": Status.RUNNING,
        "wake_at": None,
        "started_at": 10.0,  # the first run's start stays
        "updated_at": NOW,
    }
    first = t.claim(t.State(status, 0, 5.0, started_at=None), NOW)
    assert first is not None
    assert first.started_at == NOW


@pytest.mark.parametrize("status", Status.ALL)
def test_recover_requeues_running_pauses_pausing_and_leaves_the_rest(status: str) -> None:
    change = t.recover(state(status, wake_at=7.0), NOW)
    if status == Status.RUNNING:
        assert change == t.Change(status=Status.QUEUED, wake_at=NOW, updated_at=NOW)
    elif status == Status.WAITING_FOR_PAUSE:
        assert change == t.Change(status=Status.PAUSED, wake_at=None, updated_at=NOW)
    else:
        assert change is None


def test_recover_plan_is_recover_in_bulk() -> None:
    plan = {bulk.status: bulk for bulk in t.recover_plan(NOW)}
    for status in Status.ALL:
        change = t.recover(state(status), NOW)
        if change is None:
            assert status not in plan
        else:
            assert plan[status].change == change
            assert plan[status].requeued == (change.status == Status.QUEUED)
    assert [b.status for b in t.recover_plan(NOW) if b.requeued] == [Status.RUNNING]


# -- live runs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", Status.ALL)
def test_live_run_actions_apply_only_to_a_live_run_of_the_same_generation(status: str) -> None:
    entry = waiting("w", 1, 50.0)
    for generation in (2, 3, 4):
        live = status in t.ACTIVE_STATUSES and generation == 3
        s = state(status)
        assert t.is_live(status, 3, generation) is live
        assert (t.finish_run(s, generation, Status.COMPLETE, b"1", None, NOW) is None) != live
        assert (t.suspend_run(s, generation, 50.0, False, NOW) is None) != live
        assert (t.release_run(s, generation, NOW) is None) != live
        assert (t.register_wait(s, generation, "w", 1, "go", 50.0, []) is None) != live
        assert (t.expire_wait(s, generation, entry, ERR) is None) != live
        assert t.may_park(status, 3, generation) == (live and status == Status.RUNNING)
    assert t.is_held(status) == (status in t.ACTIVE_STATUSES)
    # no such instance
    assert t.finish_run(None, 3, Status.COMPLETE, None, None, NOW) is None
    assert t.suspend_run(None, 3, None, False, NOW) is None
    assert t.release_run(None, 3, NOW) is None
    assert t.register_wait(None, 3, "w", 1, "go", 50.0, []) is None
    assert t.expire_wait(None, 3, entry, ERR) is None


def test_finish_records_the_outcome() -> None:
    change = t.finish_run(state(Status.WAITING_FOR_PAUSE), 3, Status.ERRORED, None, ERR, NOW)
    assert change is not None
    assert change.updates() == {
        "status": Status.ERRORED,
        "wake_at": None,
        "output": None,
        "error": ERR,
        "ended_at": NOW,
        "updated_at": NOW,
        "rollback": None,
    }


@pytest.mark.parametrize(
    ("wake_at", "held_by_pause", "pending", "expected"),
    [
        (50.0, False, None, 50.0),
        (None, False, None, None),  # only an event or a resume wakes it
        (50.0, True, None, NOW),  # a lifted pause: due at once
        (50.0, False, 20.0, 20.0),  # an event came during the run: the earlier wins
        (10.0, False, 20.0, 10.0),
        (None, False, 20.0, 20.0),
    ],
)
def test_suspend_hibernates_until_the_earliest_wake_up(
    wake_at: float | None, held_by_pause: bool, pending: float | None, expected: float | None
) -> None:
    outcome = t.suspend_run(state(Status.RUNNING, wake_at=pending), 3, wake_at, held_by_pause, NOW)
    assert outcome == t.SuspendOutcome(
        Status.WAITING, t.Change(status=Status.WAITING, wake_at=expected, updated_at=NOW)
    )


def test_suspend_and_release_of_a_pausing_run_pause_it() -> None:
    pausing = state(Status.WAITING_FOR_PAUSE, wake_at=20.0)
    paused = t.Change(status=Status.PAUSED, wake_at=None, updated_at=NOW)
    assert t.suspend_run(pausing, 3, 50.0, True, NOW) == t.SuspendOutcome(Status.PAUSED, paused)
    assert t.release_run(pausing, 3, NOW) == paused
    assert t.release_run(state(Status.RUNNING), 3, NOW) == t.Change(
        status=Status.QUEUED, wake_at=NOW, updated_at=NOW
    )


# -- waits and events ---------------------------------------------------------------------------


def test_a_wait_consumes_the_oldest_buffered_event_of_its_type() -> None:
    buffered = [
        t.BufferedEvent(9, "go", b"9", 9.0),
        t.BufferedEvent(4, "other", b"4", 4.0),
        t.BufferedEvent(5, "go", b"5", 5.0),
    ]
    outcome = t.register_wait(state(Status.RUNNING), 3, "w", 2, "go", 60.0, buffered)
    assert outcome is not None
    assert outcome.consumed == buffered[2]
    value = t.event_value("go", b"5", 5.0)
    assert outcome.result == t.WaitResult(60.0, value)
    assert outcome.entry == JournalEntry(
        "w", 2, StepKind.WAIT, StepState.DONE, value=value, wake_at=60.0, event_type="go"
    )


def test_a_wait_with_nothing_buffered_waits() -> None:
    buffered = [t.BufferedEvent(4, "other", b"4", 4.0)]
    outcome = t.register_wait(state(Status.WAITING_FOR_PAUSE), 3, "w", 1, "go", 60.0, buffered)
    assert outcome == t.WaitOutcome(t.WaitResult(60.0, None), waiting("w", 1, 60.0), None)


def test_a_stale_wait_does_not_look_at_the_buffered_events() -> None:
    def explode() -> Any:
        raise AssertionError("read")
        yield  # pragma: no cover

    assert t.register_wait(state(Status.RUNNING), 2, "w", 1, "go", 60.0, explode()) is None


def test_expire_fails_a_waiting_step_unless_an_event_won() -> None:
    s = state(Status.RUNNING)
    expired = t.expire_wait(s, 3, waiting("w", 1, 60.0), ERR)
    assert expired == t.ExpireOutcome(True, None, t.StepUpdate("w", 1, StepState.FAILED, error=ERR))
    got = JournalEntry("w", 1, StepKind.WAIT, StepState.DONE, value=b"v", event_type="go")
    assert t.expire_wait(s, 3, got, ERR) == t.ExpireOutcome(False, b"v")
    failed = JournalEntry("w", 1, StepKind.WAIT, StepState.FAILED, error=ERR, event_type="go")
    assert t.expire_wait(s, 3, failed, ERR) == t.ExpireOutcome(True, None)  # nothing to write
    assert t.expire_wait(s, 3, None, ERR) is None  # never recorded


def test_an_event_goes_to_the_waiting_step_due_first_whose_deadline_has_not_passed() -> None:
    steps = [
        waiting("late", 1, 90.0),
        waiting("passed", 1, NOW),  # the deadline is now: too late
        waiting("other-type", 1, 1_010.0, event_type="nope"),
        JournalEntry("done", 1, StepKind.WAIT, StepState.DONE, wake_at=1_001.0, event_type="go"),
        waiting("b", 1, 1_020.0),
        waiting("a", 2, 1_020.0),
        waiting("a", 1, 1_020.0),
    ]
    outcome = t.add_event(state(Status.RUNNING), "go", b"7", NOW, steps)
    value = t.event_value("go", b"7", NOW)
    assert outcome.delivery == t.EventDelivery("a", 1, value)
    assert outcome.step == t.StepUpdate("a", 1, StepState.DONE, value=value)
    steps.append(waiting("forever", 1, None))  # a wait without a deadline comes first
    forever = t.add_event(state(Status.RUNNING), "go", b"7", NOW, steps)
    assert forever.delivery is not None
    assert forever.delivery.name == "forever"


@pytest.mark.parametrize("status", Status.ALL)
def test_an_event_wakes_what_it_finds(status: str) -> None:
    outcome = t.add_event(state(status, wake_at=5.0), "go", b"1", NOW, [waiting("w", 1, 2e3)])
    if status in t.FINITE_STATUSES:
        assert outcome == t.EventOutcome(None, None, t.Change())  # buffered, nobody to wake
        return
    assert outcome.delivery is not None
    if status == Status.WAITING:
        assert outcome.change == t.Change(status=Status.QUEUED, wake_at=NOW, updated_at=NOW)
    elif status in t.ACTIVE_STATUSES:
        assert outcome.change == t.Change(wake_at=NOW)  # the coming hibernation must not sleep
    else:
        assert outcome.change == t.Change()
    nobody = t.add_event(state(status), "go", b"1", NOW, [waiting("w", 1, 2e3, "nope")])
    assert nobody == t.EventOutcome(None, None, t.Change())


def test_a_finished_instance_does_not_look_at_its_steps() -> None:
    def explode() -> Any:
        raise AssertionError("read")
        yield  # pragma: no cover

    assert t.add_event(state(Status.COMPLETE), "go", b"1", NOW, explode()).delivery is None


# -- changes ------------------------------------------------------------------------------------


def test_a_change_tells_unchanged_from_set_to_none() -> None:
    assert t.Change().updates() == {}
    assert t.Change(wake_at=None).updates() == {"wake_at": None}
    assert t.Change().wake_at is UNSET
    update = t.StepUpdate("w", 1, StepState.DONE, value=None)
    assert update.updates() == {"state": StepState.DONE, "value": None}


# -- properties of any sequence of actions ----------------------------------------------------

STATUSES = st.sampled_from(Status.ALL)
TIMES = st.floats(min_value=0, max_value=1e6, allow_nan=False)
ACTION = st.one_of(
    st.tuples(st.just("control"), st.sampled_from(t.CONTROL_ACTIONS)),
    st.tuples(st.just("claim")),
    st.tuples(st.just("recover")),
    st.tuples(st.just("suspend"), st.none() | TIMES, st.booleans()),
    st.tuples(st.just("release")),
    st.tuples(st.just("finish"), st.sampled_from([Status.COMPLETE, Status.ERRORED])),
    st.tuples(st.just("event")),
)


def apply(s: t.State, change: t.Change) -> t.State:
    u = change.updates()
    return t.State(
        u.get("status", s.status),
        u.get("generation", s.generation),
        u.get("wake_at", s.wake_at),
        u.get("started_at", s.started_at),
    )


def step(s: t.State, action: tuple[Any, ...], now: float, stale: bool) -> t.State:
    """One action; live-run actions for the current generation unless ``stale``."""
    gen = s.generation - 1 if stale else s.generation
    kind = action[0]
    change: t.Change | None
    if kind == "control":
        change = t.control(s, action[1], now).change
    elif kind == "claim":
        change = t.claim(s, now)
    elif kind == "recover":
        change = t.recover(s, now)
    elif kind == "suspend":
        outcome = t.suspend_run(s, gen, action[1], action[2], now)
        change = None if outcome is None else outcome.change
    elif kind == "release":
        change = t.release_run(s, gen, now)
    elif kind == "finish":
        change = t.finish_run(s, gen, action[1], b"1", None, now)
    else:
        change = t.add_event(s, "go", b"1", now, [waiting("w", 1, None)]).change
    return s if change is None else apply(s, change)


@settings(max_examples=300)
@given(
    STATUSES,
    # a quarter of the live-run actions come from a stale run
    st.lists(st.tuples(ACTION, st.sampled_from([False, False, False, True])), max_size=30),
)
def test_invariants_hold_along_any_sequence_of_actions(
    start: str, actions: list[tuple[tuple[Any, ...], bool]]
) -> None:
    s = t.State(start, 0, None if start == Status.PAUSED else 0.0)
    now = 0.0
    for action, stale in actions:
        now += 1
        before = s
        s = step(s, action, now, stale)
        assert s.status in Status.ALL
        assert s.generation >= before.generation
        if stale and action[0] in ("suspend", "release", "finish"):
            assert s == before  # a stale run changes nothing
        if before.status in t.FINITE_STATUSES and action != ("control", "restart"):
            assert s.status == before.status  # only a restart leaves a finite status
        if action == ("control", "terminate"):
            assert s.status == Status.TERMINATED or before.status in t.FINITE_STATUSES
            assert s.generation == before.generation + (before.status not in t.FINITE_STATUSES)
        if action == ("control", "restart"):
            assert (s.status, s.generation) == (Status.QUEUED, before.generation + 1)
        if action == ("control", "terminate_rollback"):
            # queued to roll back (then terminated by its run's end), unless already finished
            assert s.status == Status.QUEUED or before.status in t.FINITE_STATUSES
            assert s.generation == before.generation + (before.status not in t.FINITE_STATUSES)
        elif action[0] != "control" or action[1] not in ("terminate", "restart"):
            assert s.generation == before.generation  # only terminate and restart bump it
        if s.status != before.status:
            # where an instance stops, the scheduler can find it again
            if s.status == Status.QUEUED:
                assert s.wake_at is not None
            if s.status in (Status.PAUSED, *t.FINITE_STATUSES):
                assert s.wake_at is None


@given(STATUSES, st.sampled_from(t.CONTROL_ACTIONS), st.integers(0, 10), st.none() | TIMES)
def test_control_answers_what_it_writes(
    status: str, action: str, generation: int, wake_at: float | None
) -> None:
    outcome = t.control(t.State(status, generation, wake_at), action, NOW)
    updates = outcome.change.updates()
    assert outcome.result.before == status
    assert outcome.result.after == updates.get("status", status)
    assert outcome.result.generation == updates.get("generation", generation)
    queued_again = action == "restart" or (
        action == "terminate_rollback" and status not in t.FINITE_STATUSES
    )
    assert (updates != {}) == (outcome.result.after != status or queued_again)
    if updates:
        assert updates["updated_at"] == NOW
