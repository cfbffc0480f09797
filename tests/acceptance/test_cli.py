"""``dwf`` as a user runs it: a subprocess on the bundled example."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
HELLO = ROOT / "examples" / "hello" / "workflow.py"
DWF = [sys.executable, "-m", "dynamic_workflows.cli"]


def dwf(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DWF, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_run_completes_the_example(tmp_path: Path) -> None:
    proc = dwf("run", str(HELLO), "--params", '{"name": "Ada"}', "--db", str(tmp_path / "s.db"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"status": "complete", "output": "HELLO, ADA!", "error": None}
    assert "waiting" in proc.stderr  # it hibernated during its sleep


def test_bad_params_is_a_clear_error(tmp_path: Path) -> None:
    proc = dwf("run", str(HELLO), "--params", "{nope", "--db", str(tmp_path / "s.db"))
    assert proc.returncode == 2
    assert "--params is not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_instance_id_is_a_clear_error(tmp_path: Path) -> None:
    proc = dwf("run", str(HELLO), "--id", "-bad id", "--db", str(tmp_path / "s.db"))
    assert proc.returncode == 1
    assert "Workflow instance has invalid id" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_kill_9_during_the_sleep_then_resume(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    args = [*DWF, "run", str(HELLO), "--params", '{"name": "Bo"}', "--id", "bo", "--db", db]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    deadline = time.monotonic() + 30
    seen = ""
    while "waiting" not in seen and time.monotonic() < deadline:
        seen += child.stderr.readline()
    assert "waiting" in seen, seen
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    proc = dwf("run", str(HELLO), "--id", "bo", "--db", db)
    assert proc.returncode == 0, proc.stderr
    assert "resuming instance bo" in proc.stderr
    assert json.loads(proc.stdout)["output"] == "HELLO, BO!"


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["run", "--help"]])
def test_help_and_version(args: list[str]) -> None:
    proc = dwf(*args)
    assert proc.returncode == 0
    assert proc.stdout


def test_doctor_reports_every_layer() -> None:
    proc = dwf("doctor", "--json")
    facts = json.loads(proc.stdout)
    assert set(facts["sandbox"]["layers"]) == {
        "seccomp",
        "landlock",
        "userns",
        "netns",
        "mountns",
        "rlimits",
    }
    assert facts["summary"].startswith("sandbox: seccomp=")
    # which resource limits hold: cgroup v2 where delegated, rlimits always
    assert facts["sandbox"]["limits"]["in_force"].startswith(("cgroup v2", "rlimits"))
    # exit status says whether untrusted code may run here
    assert proc.returncode == (0 if facts["sandbox"]["safe_for_untrusted"] else 1)
