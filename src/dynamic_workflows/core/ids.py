"""Random instance ids: ``str(uuid.uuid4())``, without a system call per id.

``uuid.uuid4()`` reads 16 bytes with ``os.urandom``, which releases the GIL around the
``getrandom`` system call; on a busy host (the SQLite writer thread holding the GIL) getting it
back costs far more than the id itself. :func:`uuid4_str` takes the same bytes from the same
source, read ahead in blocks, and formats them exactly as ``str(uuid.uuid4())`` does.
"""

from __future__ import annotations

import os
from collections import deque

__all__ = ["uuid4_str"]

_BLOCK = 16 * 256
"""Random bytes read at once: 256 ids."""

_pool: deque[bytes] = deque()
"""16-byte random values not handed out yet (a deque: taking one is atomic, no lock needed)."""

_VARIANT_CLEAR = ~(0xC000 << 48)
_VARIANT_SET = 0x8000 << 48
_VERSION_CLEAR = ~(0xF000 << 64)
_VERSION_SET = 4 << 76


def uuid4_str() -> str:
    """A random (version 4) UUID, as ``str(uuid.uuid4())`` formats it."""
    try:
        raw = _pool.popleft()
    except IndexError:
        block = os.urandom(_BLOCK)
        _pool.extend([block[i : i + 16] for i in range(16, _BLOCK, 16)])
        raw = block[:16]
    n = int.from_bytes(raw, "big")
    n = (n & _VARIANT_CLEAR & _VERSION_CLEAR) | _VARIANT_SET | _VERSION_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# A forked child must not hand out the ids its parent will.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.clear)
