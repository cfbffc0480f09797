"""SIGKILL at random moments, many times: nothing committed is lost or run again."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from dynamic_workflows.core.codec import decode

CHILD = Path(__file__).with_name("crash_child.py")
INSTANCES = 10_000
KILLS = 40


def _start(db: Path, log: Path, *, capture: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(log), str(INSTANCES)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_sigkill_loses_nothing_and_never_reruns_a_committed_step(tmp_path: Path) -> None:
    db, log = tmp_path / "crash.sqlite3", tmp_path / "executions.log"
    rng = random.Random(int(os.environ.get("DWF_CRASH_SEED", "1234")))
    kills = 0
    for _ in range(KILLS):
        child = _start(db, log)
        time.sleep(rng.uniform(0.2, 0.5))  # interpreter start-up is ~0.15 s: kill mid-work
        if child.poll() is not None:
            break  # finished before we could kill it
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills += 1
    final = _start(db, log, capture=True)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-3000:]
    assert kills >= 20, "the workload finished too fast to be killed often; raise INSTANCES"

    conn = sqlite3.connect(db)
    try:
        statuses = dict(conn.execute("SELECT id, status FROM instances").fetchall())
        outputs = dict(conn.execute("SELECT id, output FROM instances").fetchall())
        committed = {
            (iid, name, count): decode(value)
            for iid, name, count, value in conn.execute(
                "SELECT i.id, s.name, s.count, s.value FROM steps s "
                "JOIN instances i ON i.pk = s.instance_pk WHERE s.kind='do' AND s.state='done'"
            )
        }
    finally:
        conn.close()

    # no instance lost, every one complete with its output
    assert len(statuses) == INSTANCES
    assert set(statuses.values()) == {"complete"}, statuses
    assert all(decode(o) == {"steps": 7} for o in outputs.values())

    executions: dict[tuple[str, str, int], list[tuple[str, str]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        iid, name, count, _attempt, token, outcome = line.split()
        executions[(iid, name, int(count))].append((token, outcome))

    # 7 do-steps per instance (first, loop x3, left, right, flaky), all committed
    assert len(committed) == INSTANCES * 7
    rerun_after_commit = [
        key for key, token in committed.items() if executions[key][-1] != (token, "ok")
    ]
    assert rerun_after_commit == [], f"{len(rerun_after_commit)} committed steps ran again"
    # the stored token was produced by a logged execution (exactly-once of committed results)
    assert all(any(t == token for t, _ in executions[key]) for key, token in committed.items())
