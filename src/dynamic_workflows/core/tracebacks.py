"""The traceback kept with a step's or a run's error: the workflow's own frames only, bounded.

:func:`error_info` is how an exception becomes an :class:`~.journal.ErrorInfo` (its name, its
message, its traceback). The traceback keeps the frames of the code that was run (a tenant's
modules, named as in its ``modules`` dict; a workflow file given to the engine), never those of
this package, of the standard library or of installed packages, and reads no source lines (no
file is opened: two tenants may both have a ``main.py``). It is bounded: at most
:data:`MAX_FRAMES` frames per exception (the first and the last ones), :data:`MAX_CHAIN`
chained exceptions (``raise ... from``, an error while handling another), :data:`MAX_CHARS`
characters in all.

An exception rebuilt from a record (a step error replayed from the journal, a run's error
that crossed the sandbox) carries the recorded traceback (:func:`attach_traceback`): formatting
it gives that text, so the first run and every replay record the same traceback, and a run
that raised in a sandbox keeps its worker's frames rather than the host's.
"""

from __future__ import annotations

import os
import re
import sysconfig
import types
from typing import TypeVar

from .journal import ErrorInfo
from .step_errors import error_message, error_name

__all__ = [
    "MAX_CHAIN",
    "MAX_CHARS",
    "MAX_FRAMES",
    "attach_traceback",
    "error_info",
    "format_traceback",
    "last_frame",
]

MAX_FRAMES = 30
"""Frames kept per exception: the first 10 and the last 20 of a deeper one."""

MAX_CHAIN = 4
"""Exceptions kept of a chain (causes and contexts)."""

MAX_CHARS = 8192
"""Characters of a traceback kept: a longer one loses its oldest part."""

_ATTACHED = "__dwf_traceback__"

E = TypeVar("E", bound=BaseException)


def _skipped_roots() -> tuple[str, ...]:
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    roots = {package + os.sep}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.abspath(path) + os.sep)
    return tuple(sorted(roots))


_SKIPPED = _skipped_roots()


def _is_workflow_code(filename: str) -> bool:
    return not (filename.startswith(_SKIPPED) or (filename.startswith("<") and filename != "<"))


def attach_traceback(exc: E, text: str | None) -> E:
    """Give ``exc`` (rebuilt from a record) the recorded traceback ``text``; returns ``exc``."""
    if text:
        try:
            setattr(exc, _ATTACHED, text)
        except (AttributeError, TypeError):  # an exception class with __slots__
            pass
    return exc


def _frames(tb: types.TracebackType | None) -> list[str]:
    lines = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if _is_workflow_code(code.co_filename):
            lines.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}')
        tb = tb.tb_next
    if len(lines) > MAX_FRAMES:
        head, tail = 10, MAX_FRAMES - 10
        lines[head:-tail] = [f"  ... {len(lines) - MAX_FRAMES} more frame(s) ..."]
    return lines


def _one(exc: BaseException) -> tuple[str, bool]:
    """One exception of a chain, and whether it has frames of workflow code (or a recorded
    traceback)."""
    attached = getattr(exc, _ATTACHED, None)
    if isinstance(attached, str):
        return attached, True
    frames = _frames(exc.__traceback__)
    message = error_message(exc)
    last = f"{error_name(exc)}: {message}" if message else error_name(exc)
    if not frames:
        return last, False
    return "\n".join(["Traceback (most recent call last):", *frames, last]), True


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_traceback(exc: BaseException) -> str | None:
    """The traceback of ``exc`` as recorded (see the module docstring), or None when no frame
    of workflow code is in it (an error of the engine's own, a timeout)."""
    chain: list[str] = []  # the exception first, then what led to it, each after its link
    seen: set[int] = set()
    found = False
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen and len(seen) < MAX_CHAIN:
        seen.add(id(current))
        text, has_frames = _one(current)
        found = found or has_frames
        chain.append(text + link)
        if getattr(current, _ATTACHED, None) is not None:
            break  # a recorded traceback holds its own causes
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    if not found:
        return None
    # Oldest first, as Python prints a chain: each cause, then the link to what it led to.
    text = "".join(reversed(chain)).lstrip("\n")
    if len(text) > MAX_CHARS:
        text = "... (older part cut)\n" + text[-MAX_CHARS:].split("\n", 1)[-1]
    return text


def error_info(exc: BaseException) -> ErrorInfo:
    """The record of ``exc``: its name, its message (:func:`~.step_errors.error_message`) and its
    traceback (:func:`format_traceback`)."""
    return ErrorInfo(error_name(exc), error_message(exc), format_traceback(exc))


_FRAME = re.compile(r'^  File "(.*)", line (\d+), in ', re.MULTILINE)


def last_frame(traceback: str | None) -> str | None:
    """``file:line`` of the innermost frame of a recorded traceback (None without one)."""
    if not traceback:
        return None
    found = _FRAME.findall(traceback)
    if not found:
        return None
    filename, line = found[-1]
    return f"{filename}:{line}"
