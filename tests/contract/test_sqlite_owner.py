"""One owner per SQLite database: a second storage on the same file is refused at once, naming
the process that holds it; closing (or the holder's death, even by SIGKILL) frees it."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
from pathlib import Path

import pytest

from dynamic_workflows import Engine
from dynamic_workflows.errors import StorageError
from dynamic_workflows.storage import SQLiteStorage, open_storage
from dynamic_workflows.storage.base import NewInstance

HOLDER = """
import asyncio, sys
from dynamic_workflows.storage import SQLiteStorage

async def main():
    store = SQLiteStorage(sys.argv[1])
    await store.open()
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_second_storage_on_the_file_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3"
    first = SQLiteStorage(path)
    await first.open()
    second = SQLiteStorage(path)
    try:
        with pytest.raises(StorageError) as refused:
            await second.open()
        message = str(refused.value)
        assert str(path) in message
        assert f"process {os.getpid()} (" in message
        assert shlex.join(sys.orig_argv) in message
        assert "stop that process, or use another --db" in message
        # the refused storage is not half open
        with pytest.raises(StorageError, match="not open"):
            await second.create_instances([NewInstance("wf", "", "a", b"null")], 0.0)
        # the holder is not disturbed
        assert await first.create_instances([NewInstance("wf", "", "a", b"null")], 0.0)
    finally:
        await first.close()
    await second.open()
    try:
        assert await second.get_instance("wf", "", "a") is not None
    finally:
        await second.close()


async def test_the_file_is_the_same_under_another_name(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "sub")
    first = open_storage(f"sqlite://{tmp_path}/sub/db.sqlite3")
    await first.open()
    try:
        for other in (
            tmp_path / "sub" / ".." / "sub" / "db.sqlite3",
            tmp_path / "link" / "db.sqlite3",
        ):
            with pytest.raises(StorageError, match="is in use by"):
                await SQLiteStorage(other).open()
    finally:
        await first.close()


async def test_a_second_engine_on_the_file_does_not_start(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with Engine(SQLiteStorage(path)):
        with pytest.raises(StorageError, match="is in use by"):
            await Engine(SQLiteStorage(path)).start()
    async with Engine(SQLiteStorage(path)):  # stopped: the file is free again
        pass


async def test_another_process_is_named_and_its_death_frees_the_file(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"ready\n"
        store = SQLiteStorage(path)
        with pytest.raises(StorageError) as refused:
            await store.open()
        assert f"process {holder.pid} (" in str(refused.value)
        assert str(path) in str(refused.value)
        holder.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel drops the lock
        await holder.wait()
        await store.open()
        await store.close()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_a_lock_file_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    lock = tmp_path / "db.sqlite3.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "dwf serve"}) + "x" * 99)
    store = SQLiteStorage(path)
    await store.open()
    try:
        written = json.loads(lock.read_text())
        assert written["pid"] == os.getpid()
        assert written["command"] == shlex.join(sys.orig_argv)
    finally:
        await store.close()
    assert lock.read_text() == ""  # nothing stale for the next reader


async def test_a_failed_open_lets_the_file_go(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"not a database, not at all" * 100)
    for _ in range(2):  # the second attempt fails for the same reason, not for a lock
        with pytest.raises(StorageError, match="cannot open SQLite database"):
            await SQLiteStorage(path).open()
