"""A SIGKILL during the rollback phase: the next start resumes it, and a handler whose run was
committed before the kill does not run again."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

CHILD = Path(__file__).with_name("rollback_child.py")


def _start(db: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_during_rollback_resumes_it_without_rerunning_a_finished_handler(
    tmp_path: Path,
) -> None:
    db, log = tmp_path / "saga.sqlite3", tmp_path / "handlers.log"
    log.touch()
    child = _start(db, log)
    deadline = time.monotonic() + 30
    while "handler a start" not in log.read_text():
        assert child.poll() is None, (child.stderr.read() if child.stderr else b"").decode()
        assert time.monotonic() < deadline, "the rollback never reached a's handler"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)  # mid-rollback: b's handler is committed, a's is running
    child.communicate()
    assert log.read_text().splitlines() == ["handler b done charged", "handler a start"]
    # The status said the phase was on (a failure's phase showed no rollback key once), and
    # the mark tells the next run that run() raised: it ends the instance errored, below.
    conn = sqlite3.connect(db)
    try:
        [(marked,)] = conn.execute("SELECT rollback FROM instances WHERE id = 's1'").fetchall()
    finally:
        conn.close()
    assert json.loads(marked) == {"outcome": "running", "after_error": True}

    again = _start(db, log)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err.decode()[-3000:]
    assert log.read_text().splitlines() == [
        "handler b done charged",  # once: its journal entry was done before the kill
        "handler a start",
        "handler a start",  # a's had not finished: it runs again, from the start
        "handler a done reserved",
    ]
    conn = sqlite3.connect(db)
    try:
        status, error, rollback = conn.execute(
            "SELECT status, error_message, rollback FROM instances WHERE id = 's1'"
        ).fetchone()
        handlers = conn.execute(
            "SELECT name, count, state FROM steps WHERE kind = 'rollback' ORDER BY name"
        ).fetchall()
    finally:
        conn.close()
    assert (status, error) == ("errored", "shipping failed")
    assert json.loads(rollback) == {"outcome": "complete"}
    assert handlers == [("a", -1, "done"), ("b", -1, "done")]
