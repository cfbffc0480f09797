"""The ``sensitive`` flag of a step (Cloudflare's ``sensitive: "output"``) round-trips on every
backend: written with the step, read back by every journal read, kept by an upsert's update and
by a partial restart, and absent from rows written before it existed (the migration)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dynamic_workflows.core.journal import ErrorInfo, JournalEntry, StepKind, StepState
from dynamic_workflows.storage import SQLiteStorage, Storage
from dynamic_workflows.storage.base import NewInstance, Status
from dynamic_workflows.storage.sqlite import migrations

T0 = 1_000_000.0


def done(name: str, value: bytes, *, sensitive: bool) -> JournalEntry:
    return JournalEntry(
        name, 1, StepKind.DO, StepState.DONE, value=value, attempt=1, sensitive=sensitive
    )


async def claim(storage: Storage, now: float = T0) -> tuple[int, int]:
    (c,) = await storage.claim_due(now, 1)
    return c.instance.pk, c.instance.generation


async def test_the_flag_round_trips_through_every_journal_read(storage: Storage) -> None:
    await storage.create_instances([NewInstance("wf", "", "a", b"null")], T0)
    pk, gen = await claim(storage)
    retrying = JournalEntry(
        "secret",
        1,
        StepKind.DO,
        StepState.RETRYING,
        error=ErrorInfo("E", "not redacted"),
        attempt=1,
        wake_at=T0 + 10,
        sensitive=True,
    )
    # One call, flagged and unflagged rows mixed (PostgreSQL: one statement over arrays).
    kept = await storage.record_steps(
        [
            (pk, gen, done("plain", b'"p"', sensitive=False)),
            (pk, gen, retrying),
            (pk, gen, done("other", b'"o"', sensitive=True)),
        ],
        T0,
    )
    assert kept == [True, True, True]
    journal = {e.name: e for e in await storage.load_journal(pk)}
    assert journal["secret"] == retrying
    assert [journal[n].sensitive for n in ("plain", "secret", "other")] == [False, True, True]

    # The upsert's update writes the flag too: the retried step completes, still sensitive.
    (ok,) = await storage.record_steps([(pk, gen, done("secret", b'"s"', sensitive=True))], T1)
    assert ok
    # ... and the value stays as stored: redaction is the readers' business, not storage's.
    journal = {e.name: e for e in await storage.load_journal(pk)}
    assert (journal["secret"].value, journal["secret"].sensitive) == (b'"s"', True)

    # A claim's journal (what a run replays) carries it as well.
    assert await storage.suspend_run(pk, gen, T0 + 5, False, T0) == Status.WAITING
    (c,) = await storage.claim_due(T0 + 5, 1)
    claimed = {e.name: e.sensitive for e in c.journal}
    assert claimed == {"plain": False, "secret": True, "other": True}


async def test_a_partial_restart_keeps_the_flag_of_the_steps_it_keeps(storage: Storage) -> None:
    await storage.create_instances([NewInstance("wf", "", "a", b"null")], T0)
    pk, gen = await claim(storage)
    assert (await storage.record_steps([(pk, gen, done("one", b"1", sensitive=True))], T0))[0]
    assert (await storage.record_steps([(pk, gen, done("two", b"2", sensitive=True))], T1))[0]
    result = await storage.control(pk, "restart", T0 + 5, restart_from=("two", 1))
    assert result is not None
    assert [(e.name, e.sensitive) for e in await storage.load_journal(pk)] == [("one", True)]


T1 = T0 + 1


async def test_sqlite_steps_recorded_before_the_migration_are_not_sensitive(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    try:
        for version, sql in migrations():
            if version >= 6:
                break
            conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version={version};\nCOMMIT;")
        conn.execute(
            "INSERT INTO instances (workflow, scope, id, status, params, generation, "
            "created_at, updated_at) VALUES ('wf', '', 'old', 'complete', x'6e756c6c', 0, 1, 1)"
        )
        conn.execute(
            "INSERT INTO steps (instance_pk, name, count, kind, state, value, attempt, "
            "recorded_at) VALUES (1, 'before', 1, 'do', 'done', x'31', 1, 1)"
        )
        conn.commit()
    finally:
        conn.close()
    store = SQLiteStorage(path)
    await store.open()
    try:
        (entry,) = await store.load_journal(1)
        assert (entry.name, entry.value, entry.sensitive) == ("before", b"1", False)
    finally:
        await store.close()
