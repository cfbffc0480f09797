"""The storage contract for rollbacks (core/rollback.py), on every backend: a step's
``rollback`` flag and a handler's own entry (kind ``rollback``, count ``-n``) round-trip through
the journal; ``finish_run`` stores the rollback outcome; a terminate with rollback marks the
row and queues it, a failed run's ``begin_rollback`` marks it too, and the run's end, a plain
terminate (which records that it stopped the phase) or a restart replace the mark."""

from __future__ import annotations

from dynamic_workflows.core.journal import (
    ErrorInfo,
    JournalEntry,
    RollbackOutcome,
    StepKind,
    StepState,
    rollback_count,
)
from dynamic_workflows.core.transitions import (
    ROLLBACK_STOPPED,
    ROLLING_BACK,
    ROLLING_BACK_AFTER_ERROR,
)
from dynamic_workflows.storage import Storage
from dynamic_workflows.storage.base import NewInstance, Status

T0 = 1_000_000.0


async def started(storage: Storage, id: str = "a") -> tuple[int, int]:
    await storage.create_instances([NewInstance("wf", "", id, b"null")], T0)
    claims = await storage.claim_due(T0, 1)
    assert len(claims) == 1
    return claims[0].instance.pk, claims[0].instance.generation


async def test_a_steps_rollback_flag_and_its_handlers_entry_round_trip(storage: Storage) -> None:
    pk, gen = await started(storage)
    step = JournalEntry(
        "book", 1, StepKind.DO, StepState.DONE, value=b'"seat"', attempt=1, rollback=True
    )
    plain = JournalEntry("note", 1, StepKind.DO, StepState.DONE, value=b"1", attempt=1)
    retrying = JournalEntry(
        "book",
        rollback_count(1),
        StepKind.ROLLBACK,
        StepState.RETRYING,
        error=ErrorInfo("E", "m"),
        attempt=1,
        wake_at=T0 + 5,
    )
    assert await storage.record_steps([(pk, gen, step), (pk, gen, plain)], T0) == [True, True]
    assert await storage.record_steps([(pk, gen, retrying)], T0 + 1) == [True]
    undone = JournalEntry("book", -1, StepKind.ROLLBACK, StepState.DONE, value=b"null", attempt=2)
    assert await storage.record_steps([(pk, gen, undone)], T0 + 6) == [True]
    journal = {(e.name, e.count): e for e in await storage.load_journal(pk)}
    assert set(journal) == {("book", 1), ("note", 1), ("book", -1)}
    assert journal[("book", 1)].rollback is True
    assert journal[("note", 1)].rollback is False
    handler = journal[("book", -1)]
    assert (handler.kind, handler.state, handler.attempt, handler.rollback) == (
        StepKind.ROLLBACK,
        StepState.DONE,
        2,
        False,
    )
    # A claim hands the same journal to the run.
    assert await storage.suspend_run(pk, gen, T0 + 10, False, T0 + 7) == Status.WAITING
    [claim] = await storage.claim_due(T0 + 10, 1)
    assert {(e.name, e.count): e.rollback for e in claim.journal} == {
        ("book", 1): True,
        ("note", 1): False,
        ("book", -1): False,
    }


async def test_finish_run_stores_the_rollback_outcome(storage: Storage) -> None:
    pk, gen = await started(storage, "failed")
    outcome = RollbackOutcome("failed", ErrorInfo("RuntimeError", "cannot undo"))
    error = ErrorInfo("ValueError", "card declined")
    assert await storage.finish_run(pk, gen, Status.ERRORED, None, error, T0, rollback=outcome)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.error, row.rollback) == (Status.ERRORED, error, outcome)
    assert row.rollback is not None
    assert row.rollback.as_dict() == {
        "outcome": "failed",
        "error": {"name": "RuntimeError", "message": "cannot undo"},
    }
    [listed] = await storage.list_instances("wf")
    assert listed.rollback == outcome
    pk2, gen2 = await started(storage, "plain")
    assert await storage.finish_run(pk2, gen2, Status.ERRORED, None, error, T0)
    row2 = await storage.get_instance_by_pk(pk2)
    assert row2 is not None
    assert row2.rollback is None


async def test_terminate_with_rollback_marks_queues_and_ends_terminated(storage: Storage) -> None:
    pk, gen = await started(storage)
    result = await storage.control(pk, "terminate_rollback", T0 + 1)
    assert result is not None
    assert (result.before, result.after, result.generation) == (
        Status.RUNNING,
        Status.QUEUED,
        gen + 1,
    )
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.rollback, row.wake_at) == (Status.QUEUED, ROLLING_BACK, T0 + 1)
    # The old run is fenced off; the new claim sees the mark and ends the instance terminated.
    assert not await storage.finish_run(pk, gen, Status.ERRORED, None, None, T0 + 1)
    [claim] = await storage.claim_due(T0 + 1, 1)
    assert claim.instance.rollback == ROLLING_BACK
    done = RollbackOutcome("complete")
    assert await storage.finish_run(
        pk, claim.instance.generation, Status.TERMINATED, None, None, T0 + 2, rollback=done
    )
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.rollback, row.error) == (Status.TERMINATED, done, None)
    # A restart forgets it.
    await storage.control(pk, "restart", T0 + 3)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.rollback is None


async def test_a_plain_terminate_during_a_rollback_ends_it_at_once(storage: Storage) -> None:
    pk, _ = await started(storage)
    await storage.control(pk, "terminate_rollback", T0 + 1)
    result = await storage.control(pk, "terminate", T0 + 2)
    assert result is not None
    assert result.after == Status.TERMINATED
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    # The phase was on: the record says a terminate stopped it (it used to vanish).
    assert (row.status, row.rollback) == (Status.TERMINATED, ROLLBACK_STOPPED)
    assert row.rollback is not None
    assert row.rollback.as_dict() == {
        "outcome": "failed",
        "error": {
            "name": "Terminated",
            "message": "Instance terminated during its rollback phase; "
            "the handlers that had not finished did not run to their end",
        },
    }
    assert await storage.claim_due(T0 + 10, 1) == []
    # Finished: a terminate with rollback changes nothing.
    again = await storage.control(pk, "terminate_rollback", T0 + 3)
    assert again is not None
    assert again.after == again.before == Status.TERMINATED


async def test_begin_rollback_marks_a_live_run_until_its_end_records_the_outcome(
    storage: Storage,
) -> None:
    pk, gen = await started(storage)
    assert not await storage.begin_rollback(pk, gen + 1, T0 + 1)  # a stale run marks nothing
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.rollback is None
    assert await storage.begin_rollback(pk, gen, T0 + 1)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.rollback) == (Status.RUNNING, ROLLING_BACK_AFTER_ERROR)
    assert row.rollback is not None
    assert row.rollback.as_dict() == {"outcome": "running"}
    [listed] = await storage.list_instances("wf")
    assert listed.rollback == ROLLING_BACK_AFTER_ERROR
    # A hibernation keeps the mark, and the next claim hands it to the run (which must end
    # the instance errored, not terminated: the mark says which phase it is).
    assert await storage.suspend_run(pk, gen, T0 + 5, False, T0 + 2) == Status.WAITING
    [claim] = await storage.claim_due(T0 + 5, 1)
    assert claim.instance.rollback == ROLLING_BACK_AFTER_ERROR
    done = RollbackOutcome("complete")
    error = ErrorInfo("ValueError", "card declined")
    gen = claim.instance.generation
    assert await storage.finish_run(pk, gen, Status.ERRORED, None, error, T0 + 6, rollback=done)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.error, row.rollback) == (Status.ERRORED, error, done)
    # Once it ended, a late mark changes nothing.
    assert not await storage.begin_rollback(pk, gen, T0 + 7)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.rollback == done


async def test_a_plain_terminate_stops_a_failed_runs_rollback_phase(storage: Storage) -> None:
    pk, gen = await started(storage)
    assert await storage.begin_rollback(pk, gen, T0 + 1)
    result = await storage.control(pk, "terminate", T0 + 2)
    assert result is not None
    assert (result.before, result.after) == (Status.RUNNING, Status.TERMINATED)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.status, row.rollback, row.error) == (Status.TERMINATED, ROLLBACK_STOPPED, None)
    # The stopped run is fenced off: its end cannot overwrite the record.
    assert not await storage.finish_run(
        pk, gen, Status.ERRORED, None, None, T0 + 3, rollback=RollbackOutcome("complete")
    )
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.rollback == ROLLBACK_STOPPED
    # Without a phase on, a plain terminate leaves no rollback key.
    pk2, _ = await started(storage, "plain")
    await storage.control(pk2, "terminate", T0 + 4)
    row2 = await storage.get_instance_by_pk(pk2)
    assert row2 is not None
    assert (row2.status, row2.rollback) == (Status.TERMINATED, None)
