"""The storage contract of what runs print (``record_steps(..., logs=)``, ``load_logs``, the
instance's ``log_bytes``/``log_dropped``) and of errors' tracebacks (``ErrorInfo.traceback`` on
instances and steps): every backend, unchanged."""

from __future__ import annotations

from dynamic_workflows.core.journal import ErrorInfo, JournalEntry, StepKind, StepState
from dynamic_workflows.core.logs import LogLine
from dynamic_workflows.storage import Storage
from dynamic_workflows.storage.base import LogWrite, NewInstance, Status

T0 = 1_000_000.0
TB = 'Traceback (most recent call last):\n  File "main.py", line 3, in run\nKeyError: customer'


async def claimed(storage: Storage, *ids: str) -> list[tuple[int, int]]:
    await storage.create_instances([NewInstance("wf", "", i, b"null") for i in ids], T0)
    claims = await storage.claim_due(T0, len(ids))
    return [(c.instance.pk, c.instance.generation) for c in claims]


def line(text: str, step: str | None = None, attempt: int = 0, at: float = T0) -> LogLine:
    return LogLine(at, "stdout", text, step, 1 if step else 0, attempt)


async def test_lines_are_appended_numbered_and_counted_with_the_steps(storage: Storage) -> None:
    (pk, gen), (other, other_gen) = await claimed(storage, "a", "b")
    entry = JournalEntry("s", 1, StepKind.DO, StepState.DONE, value=b"1", attempt=2)
    first = [line("run line"), line("try 1", "s", 1), line("try 2", "s", 2)]
    kept = await storage.record_steps(
        [(pk, gen, entry)],
        T0,
        logs=[LogWrite(pk, gen, first, 100, 0), LogWrite(other, other_gen, [line("b's")], 10, 0)],
    )
    assert kept == [True]
    # Lines alone (a run's last ones), with what was dropped.
    note = LogLine(T0, "dwf", "3 line(s) dropped", "s", 1, 2, 3)
    assert await storage.record_steps([], T0, logs=[LogWrite(pk, gen, [note], 20, 3)]) == []
    got = await storage.load_logs(pk)
    assert [x.text for _, x in got] == ["run line", "try 1", "try 2", "3 line(s) dropped"]
    assert got[1][1] == first[1]
    assert got[3][1] == note
    seqs = [seq for seq, _ in got]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 4
    assert [x.text for _, x in await storage.load_logs(other)] == ["b's"]
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.log_bytes, row.log_dropped) == (120, 3)
    (journal,) = await storage.load_journal(pk)
    assert journal.attempt == 2


async def test_reading_after_a_cursor_by_step_and_attempt(storage: Storage) -> None:
    ((pk, gen),) = await claimed(storage, "a")
    lines = [line(f"l{i}", "s" if i % 2 else None, i % 3) for i in range(10)]
    await storage.record_steps([], T0, logs=[LogWrite(pk, gen, lines, 10, 0)])
    everything = await storage.load_logs(pk)
    assert len(everything) == 10
    page = await storage.load_logs(pk, limit=4)
    assert [x.text for _, x in page] == ["l0", "l1", "l2", "l3"]
    rest = await storage.load_logs(pk, after=page[-1][0])
    assert [x.text for _, x in rest] == ["l4", "l5", "l6", "l7", "l8", "l9"]
    assert await storage.load_logs(pk, after=rest[-1][0]) == []
    of_step = await storage.load_logs(pk, step=("s", 1))
    assert [x.text for _, x in of_step] == ["l1", "l3", "l5", "l7", "l9"]
    assert [x.text for _, x in await storage.load_logs(pk, step=("s", 1), attempt=1)] == [
        "l1",
        "l7",
    ]
    assert await storage.load_logs(pk, step=("t", 1)) == []


async def test_a_stale_runs_lines_are_not_kept_and_deleting_removes_them(
    storage: Storage,
) -> None:
    ((pk, gen),) = await claimed(storage, "a")
    await storage.record_steps([], T0, logs=[LogWrite(pk, gen, [line("kept")], 10, 0)])
    await storage.record_steps([], T0, logs=[LogWrite(pk, gen + 1, [line("stale")], 10, 1)])
    assert [x.text for _, x in await storage.load_logs(pk)] == ["kept"]
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert (row.log_bytes, row.log_dropped) == (10, 0)
    assert await storage.finish_run(pk, gen, Status.COMPLETE, b"1", None, T0 + 1)
    # A finished run is not live: its lines are refused too.
    await storage.record_steps([], T0, logs=[LogWrite(pk, gen, [line("late")], 10, 0)])
    assert [x.text for _, x in await storage.load_logs(pk)] == ["kept"]
    assert await storage.delete_instance(pk)
    assert await storage.load_logs(pk) == []


async def test_errors_keep_their_tracebacks(storage: Storage) -> None:
    ((pk, gen),) = await claimed(storage, "a")
    error = ErrorInfo("KeyError", "customer", TB)
    failed = JournalEntry("s", 1, StepKind.DO, StepState.FAILED, error=error, attempt=1)
    assert await storage.record_steps([(pk, gen, failed)], T0) == [True]
    (entry,) = await storage.load_journal(pk)
    assert entry.error == error
    assert await storage.finish_run(pk, gen, Status.ERRORED, None, error, T0 + 1)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.error == error
    assert (await storage.get_instance("wf", "", "a")) == row
    (listed,) = await storage.list_instances("wf")
    assert listed.error == error
    # A restart clears the error, its traceback with it.
    await storage.control(pk, "restart", T0 + 2)
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.error is None
    (claim,) = await storage.claim_due(T0 + 3, 1)
    assert claim.instance.error is None
    plain = ErrorInfo("ValueError", "no traceback")
    assert await storage.finish_run(
        pk, claim.instance.generation, Status.ERRORED, None, plain, T0 + 4
    )
    row = await storage.get_instance_by_pk(pk)
    assert row is not None
    assert row.error == plain


async def test_a_wait_that_times_out_has_no_traceback(storage: Storage) -> None:
    ((pk, gen),) = await claimed(storage, "a")
    await storage.register_wait(pk, gen, "w", 1, "go", T0 + 5, T0)
    timeout = ErrorInfo("WorkflowTimeoutError", "timed out")
    assert await storage.expire_wait(pk, gen, "w", 1, timeout, T0 + 6) == (True, None)
    (entry,) = await storage.load_journal(pk)
    assert entry.error == timeout
    assert entry.error.traceback is None
