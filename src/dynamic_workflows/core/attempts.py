"""The history of a step's attempts: when each began and ended, how it went, what it raised and
how long the engine waited before the next one.

It lives in the step's journal entry without costing the step path anything when a step
succeeds at its first try: the entry's ``started_at`` / ``ended_at`` are its latest attempt's
times, and ``attempts`` (JSON of an :class:`AttemptHistory`) holds the attempts that *failed*,
written only when one does. The history is bounded: the first :data:`KEPT_FIRST` and the last
:data:`KEPT_LAST` failed attempts are kept, with the count of all of them, so a step retried
ten thousand times stores at most twenty records.

:func:`attempts_of` puts the two together for a reader (the query layer).
"""

from __future__ import annotations

import msgspec

from .journal import ErrorInfo, JournalEntry, StepKind, StepState

__all__ = [
    "KEPT_FIRST",
    "KEPT_LAST",
    "Attempt",
    "AttemptHistory",
    "Attempts",
    "attempts_of",
    "record_failure",
]

KEPT_FIRST = 10
"""Failed attempts kept from the start of a step's history."""

KEPT_LAST = 10
"""Failed attempts kept from the end of a step's history (the most recent ones)."""


class Attempt(msgspec.Struct, frozen=True, omit_defaults=True):
    """One attempt of a ``do`` step. Times are epoch seconds (``start`` is None when the host
    did not see the attempt begin: a journal written before attempts were recorded)."""

    attempt: int
    start: float | None
    end: float | None
    success: bool
    error: ErrorInfo | None = None
    delay: float | None = None
    """Seconds the engine waited after this attempt before the next one (None: the last)."""


class AttemptHistory(msgspec.Struct, frozen=True):
    """A step's failed attempts, bounded: ``first`` and ``last`` are kept, ``total`` counts
    every failed attempt (so ``total - len(first) - len(last)`` were left out in between)."""

    total: int
    first: list[Attempt]
    last: list[Attempt]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AttemptHistory)


def _decode(data: bytes | None) -> AttemptHistory:
    if data is None:
        return AttemptHistory(0, [], [])
    return _decoder.decode(data)


def record_failure(history: bytes | None, attempt: Attempt) -> bytes:
    """``history`` (a step's ``attempts``, or None) with the failed ``attempt`` added."""
    old = _decode(history)
    if len(old.first) < KEPT_FIRST:
        first, last = [*old.first, attempt], old.last
    else:
        first, last = old.first, [*old.last, attempt][-KEPT_LAST:]
    return _encoder.encode(AttemptHistory(old.total + 1, first, last))


class Attempts(msgspec.Struct, frozen=True):
    """What is known of a step's attempts: ``kept`` in order, and ``total`` made (``omitted``
    of them are not in ``kept``: the middle of a long history)."""

    kept: list[Attempt]
    total: int

    @property
    def omitted(self) -> int:
        return self.total - len(self.kept)


def attempts_of(entry: JournalEntry) -> Attempts:
    """Every attempt a ``do`` entry (or a rollback handler's) knows of: its failed attempts,
    and the one that succeeded (from the entry's own times). Empty for a sleep or a wait."""
    if entry.kind not in (StepKind.DO, StepKind.ROLLBACK):
        return Attempts([], 0)
    history = _decode(entry.attempts)
    kept = [*history.first, *history.last]
    total = history.total
    if entry.state == StepState.DONE:
        kept.append(Attempt(entry.attempt, entry.started_at, entry.ended_at, True))
        total += 1
    # ``attempt`` counts every attempt made, also those of a journal written before attempts
    # were recorded.
    return Attempts(kept, max(total, entry.attempt, len(kept)))
