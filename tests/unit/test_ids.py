"""Instance ids: ``uuid4_str`` is ``str(uuid.uuid4())`` without a system call per id."""

from __future__ import annotations

import os
import uuid

from dynamic_workflows.core import ids


def test_formatted_as_uuid4_from_the_same_bytes() -> None:
    for _ in range(200):
        raw = os.urandom(16)
        ids._pool.appendleft(raw)
        assert ids.uuid4_str() == str(uuid.UUID(bytes=raw, version=4))


def test_random_version_4_and_distinct() -> None:
    made = [ids.uuid4_str() for _ in range(3000)]  # more than one block of random bytes
    assert len(set(made)) == len(made)
    for value in made:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_reuse_the_parents_bytes() -> None:
    ids.uuid4_str()
    assert ids._pool
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0 if not ids._pool else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
