"""The confinement API: probing, reporting, preparing, and a confined child that still works."""

from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hostile import Context, Result, filesystem, network

from dynamic_workflows.errors import ConfigurationError, DynamicWorkflowsError
from dynamic_workflows.sandbox import confine, mountns, namespaces
from dynamic_workflows.sandbox.confine import (
    ConfinementPolicy,
    IsolationReport,
    LayerStatus,
    PreparedConfinement,
    SandboxUnavailableError,
    address_space_bytes,
    confine_child,
    prepare,
    probe,
    scrubbed_environment,
)

if TYPE_CHECKING:
    from conftest import RunConfined, RunPrepared, Targets

pytestmark = pytest.mark.sandbox

ALLOW_MISSING = os.environ.get("DWF_SANDBOX_ALLOW_MISSING") == "1"
LAYERS = ("seccomp", "landlock", "userns", "netns", "mountns", "rlimits")


def crafted(**available: bool) -> IsolationReport:
    """A report saying ``available[name]`` for each layer (Landlock as ABI 7)."""
    return IsolationReport(
        tuple(
            LayerStatus(name, available.get(name, True), "abi7" if name == "landlock" else "ok")
            for name in LAYERS
        )
    )


def _status_field(name: str) -> str:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{name}:\s*(\S+)", text, re.MULTILINE)
    assert match, name
    return match.group(1)


# --- probe and report -----------------------------------------------------------------------


def test_probe_reports_every_layer(sandbox_report: IsolationReport) -> None:
    assert tuple(layer.name for layer in sandbox_report.layers) == LAYERS
    if not ALLOW_MISSING:
        for layer in sandbox_report.layers:
            assert layer.available, f"{layer.name}: {layer.detail}"
        assert sandbox_report.landlock_abi() >= 6
        assert sandbox_report.safe_for_untrusted()


def test_summary_is_one_line(sandbox_report: IsolationReport) -> None:
    line = sandbox_report.summary()
    assert "\n" not in line
    assert re.fullmatch(
        r"sandbox: seccomp=(yes|no) landlock=(abi\d+|no) userns=(yes|no) netns=(yes|no) "
        r"mountns=(yes|no) rlimits=(yes|no) -> (full|partial|insufficient|none)"
        r"( \(untrusted code refused\))?",
        line,
    ), line
    if not ALLOW_MISSING:
        assert line.endswith("-> full"), line


def test_report_as_dict_is_json_ready(sandbox_report: IsolationReport) -> None:
    data = json.loads(json.dumps(sandbox_report.as_dict()))
    assert data["level"] == sandbox_report.level()
    assert data["safe_for_untrusted"] == sandbox_report.safe_for_untrusted()
    assert set(data["layers"]) == set(LAYERS)


def test_levels_follow_the_fail_closed_rule() -> None:
    assert crafted().level() == "full"
    assert crafted(mountns=False).level() == "partial"  # file metadata visible: still safe
    no_seccomp = crafted(seccomp=False)
    assert not no_seccomp.safe_for_untrusted()
    assert no_seccomp.level() == "insufficient"
    assert "(untrusted code refused)" in no_seccomp.summary()
    assert crafted(landlock=False).safe_for_untrusted()  # a network namespace will do
    assert crafted(landlock=False).level() == "partial"
    assert crafted(userns=False, netns=False).safe_for_untrusted()  # so will Landlock
    assert not crafted(landlock=False, netns=False).safe_for_untrusted()
    old_landlock = IsolationReport(
        tuple(LayerStatus(n, True, "abi4" if n == "landlock" else "ok") for n in LAYERS)
    )
    assert old_landlock.level() == "partial"  # no signal or abstract-socket scoping
    assert crafted(**dict.fromkeys(LAYERS, False)).level() == "none"


def test_probe_leaves_the_caller_unconfined() -> None:
    user_ns = os.readlink("/proc/self/ns/user")
    probe()
    assert _status_field("Seccomp") == "0"
    assert _status_field("NoNewPrivs") == "0"
    assert os.readlink("/proc/self/ns/user") == user_ns
    assert os.listdir("/")


# --- prepare --------------------------------------------------------------------------------


def test_prepare_refuses_a_machine_without_seccomp() -> None:
    with pytest.raises(SandboxUnavailableError, match="seccomp=no"):
        prepare(ConfinementPolicy(), crafted(seccomp=False))
    assert issubclass(SandboxUnavailableError, DynamicWorkflowsError)


def test_prepare_refuses_seccomp_alone() -> None:
    with pytest.raises(SandboxUnavailableError):
        prepare(ConfinementPolicy(), crafted(landlock=False, netns=False))
    # Namespaces switched off by policy leave only Landlock to pair with seccomp.
    with pytest.raises(SandboxUnavailableError, match="namespaces disabled"):
        prepare(ConfinementPolicy(namespaces=False), crafted(landlock=False))


def test_prepare_refuses_root_children_without_landlock(
    default_policy: Callable[..., ConfinementPolicy],
) -> None:
    """Without Landlock a uid-0 child owns every root file; a network namespace is no help."""
    if os.geteuid() != 0:
        pytest.skip("the fork server is not root")
    with pytest.raises(SandboxUnavailableError, match="uid 0 without Landlock"):
        prepare(ConfinementPolicy(), crafted(landlock=False))
    policy = default_policy(uid=65534, gid=65534)
    with prepare(policy, crafted(landlock=False)) as prepared:
        assert prepared.ruleset_fd is None
        assert prepared.meets_fail_closed_rule


def test_unconfined_policy_is_prepared_on_any_machine() -> None:
    nothing = crafted(**dict.fromkeys(LAYERS, False))
    with prepare(ConfinementPolicy(unconfined=True), nothing) as prepared:
        assert prepared.seccomp is None
        assert prepared.ruleset_fd is None
        assert prepared.unshare_flags == 0


def test_prepared_confinement(
    sandbox_report: IsolationReport, default_policy: Callable[..., ConfinementPolicy]
) -> None:
    with prepare(default_policy(keep_fds=(40,)), sandbox_report) as prepared:
        assert prepared.meets_fail_closed_rule
        ruleset = prepared.ruleset_fd
        assert ruleset is not None
        assert ruleset > 40, "the ruleset must not sit on a descriptor the child keeps"
        assert os.get_inheritable(ruleset) is False
        stdlib = os.path.dirname(os.__file__)
        assert stdlib in prepared.landlock_paths
        assert os.getcwd() not in prepared.landlock_paths
        assert str(Path(confine.__file__).parent.parent) in prepared.landlock_paths
    assert prepared.ruleset_fd is None
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(ruleset)


def test_memory_bytes_must_leave_room_above_the_fork_server(
    sandbox_report: IsolationReport,
) -> None:
    mapped = address_space_bytes()
    assert mapped is not None
    assert mapped > 0
    with pytest.raises(ConfigurationError, match="already maps"):
        prepare(ConfinementPolicy(memory_bytes=mapped // 2), sandbox_report)


def test_policy_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        ConfinementPolicy(uid=1000)
    with pytest.raises(ConfigurationError):
        ConfinementPolicy(memory_bytes=0)
    with pytest.raises(ConfigurationError):
        ConfinementPolicy(keep_fds=(-1,))


def test_scrubbed_environment_holds_nothing_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-tenants")
    env = scrubbed_environment()
    assert env == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


# --- a confined child still works -----------------------------------------------------------


def everyday_work(ctx: Context) -> Result:
    """What tenant code legitimately does; runs confined, returns (True, report)."""
    import asyncio
    import fractions
    import importlib
    import threading
    import zoneinfo

    report: dict[str, object] = {"fraction": str(fractions.Fraction(1, 3) * 3)}
    report["module"] = importlib.import_module(ctx["module"]).__name__
    report["extension"] = importlib.import_module(ctx["extension"]).__name__
    report["paris"] = str(zoneinfo.ZoneInfo("Europe/Paris"))

    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(sum(range(100))))
    thread.start()
    thread.join()
    report["thread"] = results

    async def main() -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, sum, [1, 2, 3])

    report["asyncio"] = asyncio.run(main())

    received: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    os.kill(os.getpid(), signal.SIGUSR1)  # signals to itself stay allowed
    os.kill(0, 0)  # its own process group, and nobody else's
    report["own_group"] = os.getpgrp() == os.getpid()
    signal.pthread_kill(threading.get_ident(), 0)
    report["signals"] = received

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))  # lowering is fine
    report["nofile"] = [soft, hard]
    report["as"] = list(resource.getrlimit(resource.RLIMIT_AS))
    return True, json.dumps(report)


def _not_imported(*candidates: str) -> str:
    return next(name for name in candidates if name not in sys.modules)


def test_confined_child_computes_imports_threads_and_signals_itself(
    run_confined: RunConfined, default_policy: Callable[..., ConfinementPolicy]
) -> None:
    # Modules nobody imported yet: the child must read them from the stdlib under Landlock.
    module = _not_imported("colorsys", "graphlib", "sched", "tabnanny", "netrc", "shelve")
    extension = _not_imported("_lzma", "_bz2", "_curses", "_dbm", "_elementtree", "_decimal")
    policy = default_policy()
    outcome = run_confined(everyday_work, {"module": module, "extension": extension}, policy=policy)
    assert outcome.result is not None, outcome.detail
    assert outcome.result["ok"] is True, outcome.detail
    report = json.loads(outcome.detail)
    assert report["fraction"] == "1"
    assert report["extension"] == extension
    assert report["paris"] == "Europe/Paris"
    assert report["thread"] == [4950]
    assert report["asyncio"] == 6
    assert report["signals"] == [signal.SIGUSR1]
    assert report["own_group"]
    assert report["nofile"] == [64, 64]
    assert report["module"] == module
    assert report["as"] == [policy.memory_bytes] * 2


def test_child_runs_code_received_over_its_kept_socket(
    sandbox_report: IsolationReport, default_policy: Callable[..., ConfinementPolicy]
) -> None:
    """The loader's shape: the child gets tenant code as data on the one socket it keeps."""
    ours, theirs = socket.socketpair()
    with prepare(default_policy(keep_fds=(theirs.fileno(),)), sandbox_report) as prepared:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                ours.close()
                confine_child(prepared)
                namespace: dict[str, object] = {}
                exec(theirs.recv(65536).decode(), namespace)
                theirs.sendall(json.dumps(namespace["result"]).encode())
            finally:
                os._exit(0)
    theirs.close()
    with ours:
        ours.sendall(b"import statistics\nresult = statistics.mean([1, 2, 3, 4])")
        answer = ours.recv(65536)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert json.loads(answer) == 2.5


def test_landlock_and_seccomp_without_namespaces_still_confine(
    run_confined: RunConfined, targets: Targets, default_policy: Callable[..., ConfinementPolicy]
) -> None:
    """Where user namespaces are blocked (Docker, Ubuntu), the other two layers carry on."""
    policy = default_policy(namespaces=False)
    for attempt in (filesystem.read_etc_passwd, network.tcp_connect, network.udp_sendto):
        run_confined(attempt, targets.context, policy=policy).assert_blocked()
    targets.assert_untouched()


def test_drop_to_another_uid(
    run_confined: RunConfined, default_policy: Callable[..., ConfinementPolicy]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root fork server can change its children's uid")

    def identity(ctx: Context) -> Result:
        return True, json.dumps([os.getuid(), os.getgid(), os.getgroups()])

    outcome = run_confined(identity, policy=default_policy(uid=65534, gid=65534))
    assert outcome.result is not None, outcome.detail
    assert json.loads(outcome.detail) == [65534, 65534, []]


# --- the minimal root -----------------------------------------------------------------------


def test_the_minimal_root_binds_each_real_path_once(tmp_path: Path) -> None:
    (tmp_path / "lib" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to("lib")
    (tmp_path / "cache").write_text("x")
    plan = mountns.plan_root(
        [str(tmp_path / "link" / "sub"), str(tmp_path / "lib"), str(tmp_path / "cache"), "/nope"]
    )
    real = os.path.realpath(tmp_path)
    binds = {bind.path: bind.directory for bind in plan.binds}
    # tmp/link/sub comes with tmp/lib; the link itself is recreated on the way.
    assert binds == {f"{real}/cache": False, f"{real}/lib": True} | dict.fromkeys(
        mountns.DEVICES, False
    )
    assert plan.links == ((f"{real}/link", "lib"),)


def test_prepare_plans_the_minimal_root_with_a_user_namespace(
    sandbox_report: IsolationReport, default_policy: Callable[..., ConfinementPolicy]
) -> None:
    if not sandbox_report.available("mountns"):
        pytest.skip(sandbox_report.summary())
    with prepare(default_policy(), sandbox_report) as prepared:
        assert prepared.root_plan is not None
        assert prepared.unshare_flags & namespaces.CLONE_NEWNS
        assert os.path.dirname(os.__file__) in prepared.root_plan.paths
        assert not prepared.root_inherited
        assert "root=True" in repr(prepared)
    # Namespaces off, or no mount namespace on the machine: no minimal root.
    with prepare(default_policy(namespaces=False), sandbox_report) as prepared:
        assert prepared.root_plan is None
    with prepare(default_policy(), crafted(mountns=False)) as prepared:
        assert prepared.root_plan is None
        assert not prepared.unshare_flags & namespaces.CLONE_NEWNS


_FORK_SERVER = textwrap.dedent(
    """
    import json, os, socket, sys, time
    from dynamic_workflows.sandbox.confine import (
        ConfinementPolicy, confine_child, enter_fork_server_root, prepare, probe,
    )

    ours, theirs = socket.socketpair()
    mapped = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    policy = ConfinementPolicy(memory_bytes=mapped + (256 << 20), keep_fds=(theirs.fileno(),))
    prepared = prepare(policy, probe())
    entered = enter_fork_server_root(prepared)
    server_root = os.stat("/")
    pid = os.fork()
    if pid == 0:
        started = time.perf_counter()
        confine_child(prepared)
        took = time.perf_counter() - started
        seen = {}
        for path in sys.argv[1:]:
            try:
                os.stat(path)
                seen[path] = "exists"
            except OSError as exc:
                seen[path] = type(exc).__name__
        root = os.stat("/")
        theirs.sendall(json.dumps({
            "seen": seen,
            "same_root": [root.st_dev, root.st_ino] == [server_root.st_dev, server_root.st_ino],
            "confine_ms": took * 1000,
        }).encode())
        os._exit(0)
    theirs.close()
    print(json.dumps({
        "entered": entered,
        "child": json.loads(ours.recv(65536).decode()),
        "server_sees_proc": os.path.exists("/proc"),
        "proc_fd": prepared.proc_fd is not None,
        "flags": prepared.unshare_flags,
    }))
    os.waitpid(pid, 0)
    """
)


def test_a_fork_server_enters_the_minimal_root_once_for_all_its_children(
    sandbox_report: IsolationReport, tmp_path: Path
) -> None:
    """What the zygote does: its children share its root instead of building one each."""
    if not sandbox_report.available("mountns"):
        pytest.skip(sandbox_report.summary())
    secret = tmp_path / "other-tenant.py"
    secret.write_text("KEY = 1")
    done = subprocess.run(
        [sys.executable, "-I", "-c", _FORK_SERVER, str(secret), "/etc/passwd", os.__file__],
        env=scrubbed_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["entered"] is True
    assert facts["server_sees_proc"] is False  # the fork server lives in it too
    assert facts["proc_fd"] is True  # ...with a descriptor of the host's /proc
    assert not facts["flags"] & namespaces.CLONE_NEWNS  # children build nothing
    child = facts["child"]
    assert child["same_root"] is True
    assert child["seen"] == {
        str(secret): "FileNotFoundError",
        "/etc/passwd": "FileNotFoundError",
        os.__file__: "exists",
    }


# --- refusing to run tenant code ------------------------------------------------------------


def test_confine_child_refuses_an_incomplete_preparation(
    run_prepared: RunPrepared, sandbox_report: IsolationReport
) -> None:
    outcome = run_prepared(
        lambda fd: PreparedConfinement(ConfinementPolicy(keep_fds=(fd,)), sandbox_report),
        filesystem.read_etc_passwd,
    )
    assert outcome.result is not None
    assert outcome.result["ok"] is None  # the attempt never ran
    assert "SandboxUnavailableError" in outcome.detail


def test_a_kept_datagram_socket_is_refused(
    run_prepared: RunPrepared,
    sandbox_report: IsolationReport,
    default_policy: Callable[..., ConfinementPolicy],
) -> None:
    """An unconnected datagram socket could sendmsg() to any pathname socket on the host."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        outcome = run_prepared(
            lambda fd: prepare(default_policy(keep_fds=(fd, right.fileno())), sandbox_report),
            filesystem.read_etc_passwd,
        )
    assert outcome.result is not None
    assert outcome.result["ok"] is None
    assert "datagram socket" in outcome.detail


# --- the trusted-code mode ------------------------------------------------------------------


def _unconfined_state(ctx: Context) -> Result:
    libc = ctypes.CDLL(None, use_errno=True)
    deathsig = ctypes.c_int()
    libc.prctl(2, ctypes.byref(deathsig), 0, 0, 0)  # PR_GET_PDEATHSIG
    with open("/etc/passwd") as file:
        passwd = bool(file.read(1))
    state = {
        "seccomp": _status_field("Seccomp"),
        "no_new_privs": _status_field("NoNewPrivs"),
        "cap_eff": _status_field("CapEff"),
        "user_ns": os.readlink("/proc/self/ns/user"),
        "net_ns": os.readlink("/proc/self/ns/net"),
        "rlimits": [resource.getrlimit(r) for r in (resource.RLIMIT_AS, resource.RLIMIT_NOFILE)],
        "extra_fd_open": os.fstat(ctx["extra_fd"]) is not None,
        "listdir_root": bool(os.listdir("/")),
        "passwd": passwd,
        "deathsig": deathsig.value,
    }
    return True, json.dumps(state)


def test_unconfined_policy_applies_nothing_but_the_parent_death_signal(
    run_confined: RunConfined,
) -> None:
    read_end, write_end = os.pipe()
    try:
        outcome = run_confined(
            _unconfined_state, {"extra_fd": read_end}, policy=ConfinementPolicy(unconfined=True)
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert outcome.result is not None, outcome.detail
    state = json.loads(outcome.detail)
    assert state["deathsig"] == signal.SIGKILL
    assert state["seccomp"] == _status_field("Seccomp") == "0"
    assert state["no_new_privs"] == "0"
    assert state["cap_eff"] == _status_field("CapEff")
    assert state["user_ns"] == os.readlink("/proc/self/ns/user")
    assert state["net_ns"] == os.readlink("/proc/self/ns/net")
    assert state["rlimits"] == [
        list(resource.getrlimit(r)) for r in (resource.RLIMIT_AS, resource.RLIMIT_NOFILE)
    ]
    assert state["extra_fd_open"]
    assert state["listdir_root"]
    assert state["passwd"]
