"""Exhausting the machine: memory, descriptors, CPU; and looking for the host's secrets."""

from __future__ import annotations

import os

from . import Context, Result, failed


def allocate_2gib(ctx: Context) -> Result:
    """bytearray(2 GiB)."""
    try:
        block = bytearray(2 << 30)
    except MemoryError:
        return False, "MemoryError"
    size = len(block)
    del block
    return True, f"allocated {size} bytes"


def open_1000_descriptors(ctx: Context) -> Result:
    """1,000 descriptors (500 pipes)."""
    fds: list[int] = []
    try:
        for _ in range(500):
            fds.extend(os.pipe())
    except OSError as exc:
        return failed(f"stopped at {len(fds)} descriptors", exc)
    finally:
        for fd in fds:
            os.close(fd)
    return True, "opened 1000 descriptors"


def burn_cpu(ctx: Context) -> Result:
    """An endless loop: only the CPU limit ends it."""
    count = 0
    while True:
        count += 1


def read_environment_secret(ctx: Context) -> Result:
    """The secret the host had in its environment, from this process's os.environ."""
    for name, value in os.environ.items():
        if ctx["secret"] in value:
            return True, f"found the secret in {name}"
    return False, f"no secret among {sorted(os.environ)}"
