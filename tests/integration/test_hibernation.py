"""10,000 instances waiting for an event at once hold no run, no task and almost no memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "bench" / "waiting.py"


@pytest.mark.slow
def test_ten_thousand_waiting_instances_hibernate(tmp_path: Path) -> None:
    out = tmp_path / "waiting.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--instances",
            "10000",
            "--db",
            str(tmp_path / "w.db"),
            "--json",
            str(out),
        ],
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    result = json.loads(out.read_text())
    print(json.dumps(result, indent=2))  # the figures, for the record (pytest -s)

    # Hibernation: nothing in this process is kept per waiting instance.
    assert result["live_runs_while_waiting"] == 0
    # (the scheduler's own waiters come and go: a handful, never one per instance)
    assert result["asyncio_tasks_while_waiting"] <= result["asyncio_tasks_before"] + 3
    assert result["heap_bytes_per_waiting_instance"] < 512
    # Process memory, SQLite's page cache included, stays within a few KiB per instance.
    assert result["rss_bytes_per_waiting_instance"] < 8 * 1024
    # ... and every one of them wakes up and completes when its event arrives.
    assert result["final_counts"] == {"complete": 10_500}
