"""The capture of what tenant code prints (sandbox/capture.py), piece by piece: a worker's
``print`` makes the built-in's lines in one write, and a line's pieces wait for its end."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest

from dynamic_workflows.core.logs import LogBook, StepKey, current_step
from dynamic_workflows.sandbox.capture import (
    CapturedStream,
    RunSink,
    _builtin_print,
    captured_print,
    current_sink,
)


class CountingSink(RunSink):
    """A run's sink that counts the writes reaching it (pieces included)."""

    def __init__(self, book: LogBook) -> None:
        super().__init__(book)
        self.writes = 0

    def write(self, stream: str, text: str) -> None:
        self.writes += 1
        super().write(stream, text)

    def piece(self, stream: str, text: str, key: StepKey | None) -> None:
        self.writes += 1
        super().piece(stream, text, key)


def capture(
    body: Callable[[CapturedStream], Any], per_scope: int = 10_000
) -> tuple[list[tuple[str | None, str]], int]:
    """The lines (step, text) ``body`` writes to a captured stdout in step ``s``, and how many
    writes reached the sink."""
    sink = CountingSink(LogBook(per_scope, 100_000, 100_000))
    stream = CapturedStream("stdout", None, None)
    sink_token = current_sink.set(sink)
    step_token = current_step.set(("s", 1, 1))
    try:
        body(stream)
        lines = sink.take() or []
    finally:
        current_step.reset(step_token)
        current_sink.reset(sink_token)
    return [(line.step, line.text) for line in lines if not line.dropped], sink.writes


class Noisy:
    """An argument whose ``str()`` prints: only the built-in knows where that text goes."""

    def __str__(self) -> str:
        _builtin_print("from __str__")
        return "noisy"


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("step a of", "0193-x"), {}),
    (("got", 1, 2.5, True, None, -3), {}),
    (("a", "b"), {"sep": "-", "end": "!\n"}),
    (("a", "b"), {"sep": None, "end": None}),
    (("no end",), {"end": ""}),
    (("two\nlines", 7), {}),
    ((), {}),
    ((Noisy(), "after"), {}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_a_workers_print_makes_the_builtins_lines(
    args: tuple[Any, ...], kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def printing(p: Callable[..., None]) -> Callable[[CapturedStream], None]:
        def body(stream: CapturedStream) -> None:
            monkeypatch.setattr("sys.stdout", stream)
            p(*args, **kwargs)
            p("next")  # (ends a line left open by end="")

        return body

    builtin, _ = capture(printing(_builtin_print))
    ours, _ = capture(printing(captured_print))
    assert ours == builtin


def test_a_workers_print_of_plain_values_is_one_write() -> None:
    lines, writes = capture(lambda out: captured_print("step b of", "0193-x", "got", 1, file=out))
    assert lines == [("s", "step b of 0193-x got 1")]
    assert writes == 1
    _, builtin_writes = capture(
        lambda out: _builtin_print("step b of", "0193-x", "got", 1, file=out)
    )
    assert builtin_writes == 8  # what a line cost before


def test_a_workers_print_elsewhere_or_failing_is_the_builtins() -> None:
    other = io.StringIO()
    captured_print("to", "a file", sep="_", file=other)
    assert other.getvalue() == "to_a file\n"

    def huge(out: CapturedStream) -> None:
        with pytest.raises(ValueError, match="digits"):
            captured_print("x", 10**5000, file=out)
        captured_print("y", file=out)

    # The built-in wrote the pieces before the int it could not convert; so does ours.
    assert capture(huge)[0] == [("s", "x y")]
    with pytest.raises(TypeError):
        captured_print("x", sep=1)  # type: ignore[arg-type]


def test_a_full_scopes_pieces_are_not_kept() -> None:
    def body(out: CapturedStream) -> None:
        out.write("x" * 40 + "\n")  # fills the scope (40 bytes + 16)
        out.write("dropped ")
        out.write("piece\n")
        current_step.set(("t", 1, 1))
        out.write("own ")
        out.write("line\n")

    lines, _ = capture(body, per_scope=60)
    assert lines == [("s", "x" * 40), ("t", "own line")]
