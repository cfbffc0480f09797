"""cgroup v2 limits per worker: finding a delegated subtree (or why there is none), joining it,
and the rlimits fallback; on fake cgroup folders, since few machines delegate one."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hostile import Context, Result

from dynamic_workflows.sandbox import cgroups
from dynamic_workflows.sandbox.confine import (
    ConfinementPolicy,
    IsolationReport,
    LayerStatus,
    prepare,
)

if TYPE_CHECKING:
    from conftest import RunPrepared

pytestmark = pytest.mark.sandbox


def fake_machine(
    tmp_path: Path,
    *,
    cgroup: str = "0::/tenants\n",
    mounted: bool = True,
    controllers: str = "cpuset cpu io memory pids",
    enabled: str = "cpu memory",
) -> tuple[str, str, Path]:
    """Fake /proc/self/cgroup, /proc/self/mountinfo and cgroup v2 folder; their paths."""
    root = tmp_path / "cgroup2"
    group = root / "tenants"
    group.mkdir(parents=True)
    (group / "cgroup.controllers").write_text(controllers + "\n")
    (group / "cgroup.subtree_control").write_text(enabled + "\n")
    (group / "cgroup.procs").write_text("")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text(cgroup)
    mountinfo = tmp_path / "mountinfo"
    mount = f"41 31 0:38 / {root} rw,relatime - cgroup2 cgroup2 rw\n" if mounted else ""
    mountinfo.write_text("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n" + mount)
    return str(proc_cgroup), str(mountinfo), group


def test_a_delegated_subtree_is_found(tmp_path: Path) -> None:
    proc_cgroup, mountinfo, group = fake_machine(tmp_path)
    assert cgroups.find_delegation(proc_cgroup, mountinfo) == cgroups.Delegation(str(group))


@pytest.mark.parametrize(
    ("machine", "reason"),
    [
        ({"cgroup": "4:memory:/x\n1:cpu:/\n"}, "no cgroup v2 hierarchy"),
        ({"mounted": False}, "cgroup v2 is not mounted"),
        ({"controllers": "hugetlb"}, r"has no cpu or memory controller \(it has: hugetlb"),
        ({"controllers": "cpu pids"}, "has no memory controller"),
        ({"enabled": "cpu"}, r"does not enable memory for its children"),
    ],
)
def test_why_there_is_no_delegated_subtree(
    tmp_path: Path, machine: dict[str, object], reason: str
) -> None:
    found = cgroups.find_delegation(*fake_machine(tmp_path, **machine)[:2])  # type: ignore[arg-type]
    assert isinstance(found, str)
    assert re.search(reason, found), found


def test_unreadable_files_are_a_reason_not_an_error(tmp_path: Path) -> None:
    found = cgroups.find_delegation(str(tmp_path / "nope"), str(tmp_path / "nope"))
    assert isinstance(found, str)
    assert "cannot read" in found


def test_this_machine_reports_which_limits_hold(sandbox_report: IsolationReport) -> None:
    status = sandbox_report.cgroup
    assert status is not None
    facts = sandbox_report.as_dict()["limits"]
    assert facts["cgroup2"] is status.available
    assert facts["in_force"].startswith("cgroup v2" if status.available else "rlimits")


def test_join_limits_and_enters_a_cgroup_of_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "delegated"
    folder.mkdir()
    fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
    try:
        cgroups.join(fd, "dwf-w1", 128 << 20, cpus=0.5)
        cgroups.remove(fd, "nope")  # nothing to remove: no error
    finally:
        os.close(fd)
    group = folder / "dwf-w1"
    assert (group / "memory.max").read_text() == str(128 << 20)
    assert (group / "cpu.max").read_text() == "50000 100000"
    assert (group / "cgroup.procs").read_text() == "0"  # "0": the writing process


def _crafted(report: IsolationReport, cgroup: LayerStatus | None) -> IsolationReport:
    return IsolationReport(report.layers, cgroup)


def test_without_a_delegated_subtree_the_rlimits_alone_hold(
    sandbox_report: IsolationReport, default_policy: Callable[..., ConfinementPolicy]
) -> None:
    none = LayerStatus("cgroup2", False, "cgroup v1 only")
    for report in (_crafted(sandbox_report, none), _crafted(sandbox_report, None)):
        with prepare(default_policy(), report) as prepared:
            assert prepared.cgroup_fd is None
        assert report.limits_in_force().startswith("rlimits")


def _nothing(ctx: Context) -> Result:
    return False, "ran"


def test_a_confined_child_joins_its_cgroup_before_anything_else(
    tmp_path: Path,
    sandbox_report: IsolationReport,
    default_policy: Callable[..., ConfinementPolicy],
    run_prepared: RunPrepared,
) -> None:
    folder = tmp_path / "delegated"
    folder.mkdir()
    report = _crafted(sandbox_report, LayerStatus("cgroup2", True, str(folder)))
    assert report.limits_in_force().startswith(f"cgroup v2 (memory.max, cpu.max) beneath {folder}")
    policy = default_policy()
    outcome = run_prepared(lambda fd: prepare(replace(policy, keep_fds=(fd,)), report), _nothing)
    outcome.assert_blocked("ran")  # it was confined and ran
    (group,) = folder.iterdir()
    assert group.name.startswith("dwf-w")
    assert (group / "memory.max").read_text() == str(policy.memory_bytes)
    assert (group / "cpu.max").read_text() == "100000 100000"
    # Opting out: rlimits only.
    with prepare(default_policy(cgroups=False), report) as prepared:
        assert prepared.cgroup_fd is None
