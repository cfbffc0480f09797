"""Hostile tenant code for the escape suite.

Each function tries one escape from inside a confined child and returns ``(escaped, detail)``:
``escaped`` is True only if the attempt *worked*. The functions catch the failures they expect
and name them in ``detail`` (errno names included), so a test can check that an attempt failed
where it should have and not somewhere else by accident.
"""

from __future__ import annotations

import ctypes
import errno
from typing import Any

Context = dict[str, Any]
Result = tuple[bool, str]


def failed(step: str, exc: BaseException) -> Result:
    """A blocked attempt: which step failed, and how (``PermissionError: [Errno 1] ...``)."""
    name = ""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = f" {errno.errorcode.get(exc.errno, exc.errno)}"
    return False, f"{step}:{name} {type(exc).__name__}: {exc}"


def syscall(name: str | int, *args: Any) -> tuple[int, int]:
    """Make a raw system call (by name, numbered for this architecture): (result, errno)."""
    import pyseccomp  # type: ignore[import-untyped]

    number = (
        name if isinstance(name, int) else pyseccomp.resolve_syscall(pyseccomp.system_arch(), name)
    )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *args)
    return int(result), ctypes.get_errno()


def syscall_attempt(name: str, *args: Any) -> Result:
    """A raw system call as an attempt: it escaped if the call succeeded."""
    result, err = syscall(name, *args)
    if result < 0:
        return False, f"{name}: {errno.errorcode.get(err, err)}"
    return True, f"{name} returned {result}"
