"""Confining a forked tenant child: what the machine offers, and applying it before tenant code.

Three steps, in three places::

    report = probe()                       # once at start-up: what this machine offers
    log.info(report.summary())             # "sandbox: seccomp=yes landlock=abi7 ... -> full"
    prepared = prepare(policy, report)     # once in the fork server, before any fork
    ... fork ...
    confine_child(prepared)                # in each child, before it runs any tenant code

:func:`confine_child` applies, in this order (seccomp last, since it forbids what the earlier
steps do):

1. parent-death signal (``SIGKILL``), and a check that the fork server is still there; where
   the machine delegates a cgroup v2 subtree, a cgroup of its own with ``memory.max`` and
   ``cpu.max`` (:mod:`.cgroups`; the rlimits of step 5 hold either way).
2. identity and namespaces (:mod:`.namespaces`): a root fork server may drop to the policy's
   uid/gid; then a new user, network, IPC and UTS namespace with the ids mapped 1:1; the
   minimal root (:mod:`.mountns`: a private mount namespace holding only what tenant code
   reads, so that the rest of the host's filesystem does not exist, even for ``stat``),
   built by the child itself or, when the fork server called
   :func:`enter_fork_server_root`, inherited from it; then every capability dropped.
3. hygiene: ``PR_SET_NO_NEW_PRIVS``, a process group of its own (``setpgid``, not
   ``setsid``: see :func:`_hygiene`; start the fork server itself in a new session without
   a controlling terminal).
4. descriptors: stdin/stdout/stderr onto ``/dev/null`` and every other descriptor closed,
   except ``policy.keep_fds`` (the child's socket, which must not be a datagram socket).
5. rlimits: address space, CPU (soft: ``SIGXCPU``; hard = soft + 1: ``SIGKILL``), open files,
   file size 0, core size 0, and, inside a user namespace, 64 tasks (the child and its
   threads; the kernel never enforces it for uid 0).
6. Landlock (:mod:`.landlock`): read-only stdlib, site-packages, shared libraries, zoneinfo
   and ``policy.read_paths``; no TCP; abstract sockets and signals scoped (ABI >= 6).
7. ``PR_SET_DUMPABLE(0)``.
8. seccomp (:mod:`.seccomp_filter`): one program, a pid prefix then the deny-list filter.

Fail closed: :func:`prepare` raises :class:`SandboxUnavailableError` unless seccomp and
(Landlock or a network namespace) are usable, and also when Landlock is missing and the
children would run as uid 0 (root owns the files it would then reach); :func:`confine_child`
raises it when any planned layer fails to apply, and the child must then exit without running
tenant code.
``ConfinementPolicy(unconfined=True)`` is the operator's explicit mode for trusted code:
only the parent-death signal is set.

What confinement cannot do:

- The environment and memory of the fork server are the child's (``fork`` copies them, and
  ctypes reads any of its own memory). Clearing ``os.environ`` in the child would hide
  nothing: the strings stay in the inherited stack and heap. Start the fork server with
  :func:`scrubbed_environment` and hold no secrets, tenant data or database handles in it.
- Python objects inherited from the fork server whose descriptors step 4 closed must not be
  used: their descriptor numbers get reused.
- Without the minimal root (no mount namespace on this machine), file metadata (``stat`` of
  any path) stays visible; contents and listings do not.

Cost, measured in the child on the development machine (2-core VM, kernel 6.18, Landlock ABI 7,
as root, other work running at load ~7; 300 children forked from a 46 MB process that had
called ``gc.freeze()``)::

    step                                          p50       p90
    parent-death signal                         0.10 ms   0.13 ms  first Python run: COW faults
    namespaces: user+net+ipc+uts, id maps, caps 0.84 ms   1.07 ms  mostly the kernel's new netns
    minimal root, inherited from the fork server  0 ms              built by the child: ~1 ms
    no_new_privs, setpgid                       0.02 ms   0.02 ms
    descriptors                                 0.13 ms   0.16 ms
    rlimits                                     0.05 ms   0.07 ms
    Landlock restrict_self                      0.07 ms   0.08 ms
    dumpable                                    0.01 ms   0.01 ms
    seccomp, 222 instructions, pre-exported     0.18 ms   0.23 ms  ~0.15 ms is the kernel's
    total                                       1.50 ms   2.56 ms  0.65 ms with namespaces=False

A child takes ~140 copy-on-write page faults in all (~5 us each on this VM). :func:`prepare`
takes 8 ms the first time (loading libseccomp), 1.2 ms after: 0.47 ms compiling the filter and
0.40 ms building the Landlock ruleset, which no child repeats. :func:`probe`: ~15 ms, once.
"""

from __future__ import annotations

import _socket
import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..errors import ConfigurationError, SandboxUnavailableError
from . import cgroups, landlock, mountns, namespaces, seccomp_filter

__all__ = [
    "ConfinementPolicy",
    "IsolationReport",
    "LayerStatus",
    "PreparedConfinement",
    "SandboxUnavailableError",
    "address_space_bytes",
    "cgroup_name",
    "confine_child",
    "enter_fork_server_root",
    "prepare",
    "probe",
    "scrubbed_environment",
]

SECCOMP = "seccomp"
LANDLOCK = "landlock"
USERNS = "userns"
NETNS = "netns"
MOUNTNS = "mountns"
RLIMITS = "rlimits"
_LAYERS = (SECCOMP, LANDLOCK, USERNS, NETNS, MOUNTNS, RLIMITS)

_NETNS_FLAGS = namespaces.CLONE_NEWNET | namespaces.CLONE_NEWIPC | namespaces.CLONE_NEWUTS
_TASKS_IN_USERNS = 64
"""RLIMIT_NPROC in a child's own user namespace: itself and up to 63 threads (asyncio's default
executor uses at most 32)."""

_PROBE_TIMEOUT = 10.0
"""Seconds the probe child gets; it normally needs about 0.02."""
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_CAP_SYS_ADMIN = 21

# Resolved at import, in the fork server, so that no child has to look the symbol up.
_LIBC = ctypes.CDLL(None, use_errno=True)
_prctl_call = _LIBC.prctl
_prctl_call.argtypes = (
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
)
_prctl_call.restype = ctypes.c_int


@dataclass(frozen=True)
class ConfinementPolicy:
    """What a confined child may use. Defaults suit one workflow run."""

    memory_bytes: int = 256 * 1024 * 1024
    """RLIMIT_AS: the whole address space, *including* what the child inherits from the fork
    server (see :func:`address_space_bytes`; a lean fork server maps 30-50 MiB, but every
    thread it ever ran can leave a 64 MiB malloc arena reserved)."""
    cpu_seconds: int = 30
    """RLIMIT_CPU soft limit (``SIGXCPU``); the hard limit, one second later, is ``SIGKILL``."""
    max_files: int = 64
    """RLIMIT_NOFILE."""
    read_paths: tuple[str, ...] = ()
    """Extra read-only paths for Landlock; stdlib, site-packages and shared libs are added."""
    keep_fds: tuple[int, ...] = ()
    """The only descriptors the child keeps (its socket); every other one is closed. They are
    numbers in the child: to share one preparation between children, move each child's socket
    to the same number (``os.dup2``) before :func:`confine_child`. A kept socket must be
    ``SOCK_STREAM`` or ``SOCK_SEQPACKET``."""
    namespaces: bool = True
    """New user, network, IPC, UTS and mount namespaces (the minimal root) when the machine
    allows them."""
    unconfined: bool = False
    """The operator's explicit trusted-code mode: only the parent-death signal is set."""
    uid: int | None = None
    """A root fork server's children become this uid (and :attr:`gid`); None keeps the
    fork server's. The interpreter's files must be readable by it, and the machine must
    allow it user namespaces (:func:`probe` ran as root) or set ``namespaces=False``."""
    gid: int | None = None
    """The gid that goes with :attr:`uid`; both or neither."""
    cgroups: bool = True
    """Also a cgroup v2 of its own per child (``memory.max`` = :attr:`memory_bytes`, ``cpu.max``
    = one CPU) where the machine delegates one (:mod:`.cgroups`); the rlimits hold anyway."""

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0 or self.cpu_seconds <= 0 or self.max_files <= 0:
            raise ConfigurationError("memory_bytes, cpu_seconds and max_files must be positive")
        if (self.uid is None) != (self.gid is None):
            raise ConfigurationError("ConfinementPolicy.uid and .gid go together")
        if any(fd < 0 for fd in self.keep_fds):
            raise ConfigurationError(f"keep_fds must be descriptors, got {self.keep_fds!r}")


@dataclass(frozen=True)
class LayerStatus:
    """Whether one isolation layer works on this machine, and how (or why not)."""

    name: str
    available: bool
    detail: str


@dataclass(frozen=True)
class IsolationReport:
    """The isolation this machine offers, as found by :func:`probe`."""

    layers: tuple[LayerStatus, ...]
    cgroup: LayerStatus | None = None
    """Whether workers also get a cgroup v2 of their own (memory.max, cpu.max): available, with
    the delegated directory as detail, or not, with the reason (see :mod:`.cgroups`)."""

    def limits_in_force(self) -> str:
        """Which resource limits a worker gets here, for ``dwf doctor``."""
        rlimits = "rlimits (RLIMIT_AS memory, RLIMIT_CPU time, RLIMIT_NOFILE, RLIMIT_NPROC)"
        if self.cgroup is not None and self.cgroup.available:
            return f"cgroup v2 (memory.max, cpu.max) beneath {self.cgroup.detail}, and {rlimits}"
        return rlimits

    def layer(self, name: str) -> LayerStatus | None:
        """The status of the layer called ``name``, or None if the report lacks it."""
        return next((layer for layer in self.layers if layer.name == name), None)

    def available(self, name: str) -> bool:
        """Whether the layer called ``name`` is present and usable."""
        layer = self.layer(name)
        return layer is not None and layer.available

    def landlock_abi(self) -> int:
        """The Landlock ABI version found (its detail reads ``abiN``); 0 when unavailable."""
        layer = self.layer(LANDLOCK)
        if layer is None or not layer.available:
            return 0
        digits = layer.detail.removeprefix("abi").split(" ")[0]
        return int(digits) if digits.isdigit() else 0

    def safe_for_untrusted(self) -> bool:
        """The fail-closed rule: seccomp, and Landlock or a network namespace."""
        return self.available(SECCOMP) and (self.available(LANDLOCK) or self.available(NETNS))

    def level(self) -> str:
        """``full`` (every layer; Landlock ABI >= 6), ``partial`` (safe for untrusted code,
        something missing), ``insufficient`` (some layers, not safe) or ``none``."""
        if all(self.available(name) for name in _LAYERS) and self.landlock_abi() >= 6:
            return "full"
        if self.safe_for_untrusted():
            return "partial"
        if any(layer.available for layer in self.layers):
            return "insufficient"
        return "none"

    def summary(self) -> str:
        """One log line, e.g. ``sandbox: seccomp=yes landlock=abi7 ... rlimits=yes -> full``."""
        parts = []
        for name in _LAYERS:
            if name == LANDLOCK and self.available(LANDLOCK):
                parts.append(f"{name}=abi{self.landlock_abi()}")
            else:
                parts.append(f"{name}={'yes' if self.available(name) else 'no'}")
        tail = "" if self.safe_for_untrusted() else " (untrusted code refused)"
        return f"sandbox: {' '.join(parts)} -> {self.level()}{tail}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for ``dwf doctor`` and status endpoints."""
        return {
            "level": self.level(),
            "safe_for_untrusted": self.safe_for_untrusted(),
            "layers": {
                layer.name: {"available": layer.available, "detail": layer.detail}
                for layer in self.layers
            },
            "limits": {
                "cgroup2": self.cgroup is not None and self.cgroup.available,
                "detail": self.cgroup.detail if self.cgroup is not None else "not probed",
                "in_force": self.limits_in_force(),
            },
        }


# --- probe ----------------------------------------------------------------------------------


def _try(action: Callable[[], str]) -> tuple[bool, str]:
    try:
        return True, action()
    except Exception as exc:  # the report carries the reason, whatever it is
        return False, f"{type(exc).__name__}: {exc}".replace("\n", " ")


def _probe_layers() -> dict[str, tuple[bool, str]]:
    """Try every layer on the calling process (a throwaway child), in confine_child's order."""
    results: dict[str, tuple[bool, str]] = {}
    # Compiled first: libseccomp must be loaded before Landlock takes the filesystem away.
    programs: list[bytes] = []

    def compile_seccomp() -> str:
        programs.append(seccomp_filter.build_program().for_pid(os.getpid()))
        return "compiled"

    compiled = _try(compile_seccomp)

    def userns() -> str:
        namespaces.enter_namespaces(namespaces.CLONE_NEWUSER)
        return "ok"

    results[USERNS] = _try(userns)

    def netns() -> str:
        namespaces.unshare(_NETNS_FLAGS)
        return "net+ipc+uts" + ("" if results[USERNS][0] else " without a user namespace")

    results[NETNS] = _try(netns)

    def mount_namespace() -> str:
        if not mountns.supported():
            raise OSError(0, "pivot_root is not known on this architecture")
        plan = mountns.plan_root(landlock.default_read_paths())
        namespaces.unshare(namespaces.CLONE_NEWNS)
        mountns.enter_root(plan)
        if os.path.exists("/proc"):
            raise OSError(0, "the host's /proc is still there")
        return f"minimal root of {len(plan.binds)} read-only mounts"

    results[MOUNTNS] = _try(mount_namespace)

    def rlimits() -> str:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        return "ok"

    results[RLIMITS] = _try(rlimits)

    def landlock_layer() -> str:
        _set_no_new_privs()
        abi = landlock.abi_version()
        ruleset, _ = landlock.create_ruleset(abi, ())
        landlock.restrict_self(ruleset)
        return f"abi{abi}"

    results[LANDLOCK] = _try(landlock_layer)

    def seccomp_layer() -> str:
        _set_no_new_privs()
        seccomp_filter.load(programs[0])
        return f"filter of {len(programs[0]) // 8} instructions"

    results[SECCOMP] = _try(seccomp_layer) if compiled[0] else compiled
    return results


def probe() -> IsolationReport:
    """Find which isolation layers work here, without confining the calling process.

    A throwaway child tries each layer on itself (unshare, Landlock, seccomp) and reports
    over a pipe; about 20 ms. Nothing is cached: call it once at start-up (before starting
    threads: the child is forked), log its :meth:`~IsolationReport.summary` and keep the
    report for :func:`prepare`.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the throwaway child
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(_probe_layers()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + _PROBE_TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                # A child stuck on a lock it inherited from another of our threads.
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    try:
        found = json.loads(b"".join(chunks))
    except ValueError:
        found = {}
    layers = []
    for name in _LAYERS:
        available, detail = found.get(name, (False, "the probe process died or hung"))
        layers.append(LayerStatus(name, bool(available), str(detail)))
    return IsolationReport(tuple(layers), _probe_cgroup())


def _probe_cgroup() -> LayerStatus:
    found = cgroups.find_delegation()
    if isinstance(found, cgroups.Delegation):
        return LayerStatus("cgroup2", True, found.path)
    return LayerStatus("cgroup2", False, found)


# --- prepare --------------------------------------------------------------------------------


class PreparedConfinement:
    """Everything a child needs to confine itself, computed once by the fork server.

    Holds a Landlock ruleset descriptor that every child inherits; :meth:`close` it (or use
    the object as a context manager) when the fork server is done forking.
    """

    __slots__ = (
        "_cgroup",
        "_proc",
        "_ruleset",
        "landlock_paths",
        "parent_pid",
        "policy",
        "report",
        "root_inherited",
        "root_plan",
        "seccomp",
        "unshare_flags",
    )

    def __init__(
        self,
        policy: ConfinementPolicy,
        report: IsolationReport,
        *,
        unshare_flags: int = 0,
        ruleset: int | None = None,
        landlock_paths: tuple[str, ...] = (),
        seccomp: seccomp_filter.LoadableProgram | None = None,
        root_plan: mountns.RootPlan | None = None,
        cgroup: int | None = None,
    ) -> None:
        self.policy = policy
        """The policy this was prepared for."""
        self.report = report
        """The report it was prepared against."""
        self.parent_pid = os.getpid()
        """The fork server: a child whose parent is anyone else kills itself."""
        self.unshare_flags = unshare_flags
        """``CLONE_NEW*`` flags to unshare; 0 for none."""
        self._ruleset = ruleset
        self.landlock_paths = landlock_paths
        """The paths the Landlock ruleset grants read access beneath."""
        self.seccomp = seccomp
        """The seccomp program (pid prefix + exported deny-list filter) in C memory, ready
        to load; None when seccomp is not used."""
        self.root_plan = root_plan
        """The minimal root (see :mod:`.mountns`); None when there is none."""
        self.root_inherited = False
        """The fork server lives in the minimal root already (:func:`enter_fork_server_root`):
        children share it instead of building their own."""
        self._proc: int | None = None
        self._cgroup = cgroup

    @property
    def proc_fd(self) -> int | None:
        """A descriptor of the host's ``/proc``, held by a fork server living in the minimal
        root (children open their own accounting files and id maps through it, before
        closing it with every other descriptor); None otherwise."""
        return self._proc

    @property
    def cgroup_fd(self) -> int | None:
        """A descriptor of the delegated cgroup v2 directory each child creates its own cgroup
        in (see :mod:`.cgroups`); None when workers get rlimits only."""
        return self._cgroup

    @property
    def ruleset_fd(self) -> int | None:
        """The Landlock ruleset descriptor; None when Landlock is not used or after close."""
        return self._ruleset

    @property
    def meets_fail_closed_rule(self) -> bool:
        """Seccomp, and Landlock or a network namespace, are all planned."""
        return self.seccomp is not None and (
            self._ruleset is not None or bool(self.unshare_flags & namespaces.CLONE_NEWNET)
        )

    def close(self) -> None:
        """Release the ruleset descriptor; later children can no longer be confined."""
        if self._ruleset is not None:
            os.close(self._ruleset)
            self._ruleset = None
        if self._proc is not None:
            os.close(self._proc)
            self._proc = None
        if self._cgroup is not None:
            os.close(self._cgroup)
            self._cgroup = None

    def __enter__(self) -> PreparedConfinement:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        root = "inherited" if self.root_inherited else self.root_plan is not None
        return (
            f"PreparedConfinement(unshare_flags={self.unshare_flags:#x}, "
            f"ruleset_fd={self._ruleset}, seccomp={self.seccomp is not None}, "
            f"root={root}, unconfined={self.policy.unconfined})"
        )


def prepare(policy: ConfinementPolicy, report: IsolationReport) -> PreparedConfinement:
    """Build, once in the fork server, what :func:`confine_child` applies in each child.

    Compiles and exports the seccomp program and opens the Landlock ruleset, for the layers
    ``report`` says are available. Raises :class:`SandboxUnavailableError` when they do not
    meet the fail-closed rule (or Landlock is missing for children that would run as uid 0)
    and the policy is not ``unconfined``; ``ConfigurationError`` for a ``uid`` a non-root
    fork server cannot take, or a ``memory_bytes`` the fork server's own address space
    already fills.
    """
    if policy.unconfined:
        return PreparedConfinement(policy, report)
    if policy.uid is not None and os.geteuid() != 0 and policy.uid != os.geteuid():
        raise ConfigurationError("ConfinementPolicy.uid needs a fork server running as root")
    flags = 0
    if policy.namespaces:
        if report.available(USERNS):
            flags |= namespaces.CLONE_NEWUSER
        if report.available(NETNS):
            flags |= _NETNS_FLAGS
    root_plan: mountns.RootPlan | None = None
    drops_uid = policy.uid is not None and os.geteuid() == 0
    if (
        flags & namespaces.CLONE_NEWUSER
        and report.available(MOUNTNS)
        # A child dropping to the policy's uid builds its root as root first (see
        # _enter_namespaces), which takes CAP_SYS_ADMIN; without it, no minimal root.
        and (not drops_uid or _has_cap_sys_admin())
    ):
        # Built by each child in its own mount namespace, unless the fork server builds it once
        # for all of them (enter_fork_server_root).
        root_plan = mountns.plan_root(landlock.default_read_paths() + policy.read_paths)
        flags |= namespaces.CLONE_NEWNS
    use_landlock = report.available(LANDLOCK)
    use_seccomp = report.available(SECCOMP)
    if not (use_seccomp and (use_landlock or flags & namespaces.CLONE_NEWNET)):
        raise SandboxUnavailableError(
            "refusing to run untrusted code: seccomp and (Landlock or a network namespace) "
            f"are required; {report.summary()}"
            + ("" if policy.namespaces else " (namespaces disabled by policy)")
        )
    try:
        program = seccomp_filter.LoadableProgram(seccomp_filter.build_program())
    except (ImportError, OSError, ValueError) as exc:
        raise SandboxUnavailableError(f"seccomp: cannot build the filter: {exc}") from exc
    child_uid = os.geteuid() if policy.uid is None else policy.uid
    if not use_landlock and child_uid == 0:
        # Dropping capabilities does not stop uid 0 from being the *owner* of root's files:
        # without Landlock the child could read /etc/shadow and truncate any root-owned file.
        raise SandboxUnavailableError(
            "refusing to run untrusted code as uid 0 without Landlock: it could read and write "
            "every root-owned file; run the fork server unprivileged or set "
            f"ConfinementPolicy.uid/gid; {report.summary()}"
        )
    mapped = address_space_bytes()
    if mapped is not None and mapped >= policy.memory_bytes:
        raise ConfigurationError(
            f"the fork server already maps {mapped >> 20} MiB, at least memory_bytes "
            f"({policy.memory_bytes >> 20} MiB): its children could not allocate anything"
        )
    ruleset: int | None = None
    granted: tuple[str, ...] = ()
    if use_landlock:
        try:
            paths = landlock.default_read_paths() + policy.read_paths
            ruleset, granted = landlock.create_ruleset(landlock.abi_version(), paths)
            # Out of the way of the descriptors the child keeps (and of 0-2, which a fork
            # server missing stdio would hand out first).
            floor = max((*policy.keep_fds, 2)) + 1
            if ruleset < floor:
                moved = _dup_above(ruleset, floor)
                os.close(ruleset)
                ruleset = moved
        except OSError as exc:
            raise SandboxUnavailableError(f"landlock: cannot build the ruleset: {exc}") from exc
    return PreparedConfinement(
        policy,
        report,
        unshare_flags=flags,
        ruleset=ruleset,
        landlock_paths=granted,
        seccomp=program,
        root_plan=root_plan,
        cgroup=_open_cgroup(policy, report),
    )


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status") as file:
            effective = next(line for line in file if line.startswith("CapEff:"))
    except (OSError, StopIteration):
        return False
    return bool(int(effective.split()[1], 16) & (1 << _CAP_SYS_ADMIN))


def _open_cgroup(policy: ConfinementPolicy, report: IsolationReport) -> int | None:
    """The delegated cgroup directory, open, when the workers get cgroups; else None (rlimits)."""
    if not policy.cgroups or report.cgroup is None or not report.cgroup.available:
        return None
    try:
        opened = os.open(report.cgroup.detail, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None  # gone since the probe: rlimits only
    moved = _dup_above(opened, max((*policy.keep_fds, 2)) + 1)
    os.close(opened)
    return moved


def cgroup_name(pid: int) -> str:
    """The cgroup a confined child ``pid`` creates for itself beneath the delegated one."""
    return f"dwf-w{pid}"


def enter_fork_server_root(prepared: PreparedConfinement) -> bool:
    """Move the calling fork server into the minimal root, once, for all its children.

    Children forked afterwards share its mount namespace instead of each building one (about
    1 ms a child). Call it after :func:`prepare` and before forking; the fork server keeps a
    descriptor of the host's ``/proc`` (:attr:`PreparedConfinement.proc_fd`) and has no other
    view of the host's filesystem from then on. A root fork server unshares its mount
    namespace; any other (or root without ``CAP_SYS_ADMIN``) enters a user namespace of its
    own first, and its children nest theirs in it. Returns False, changing nothing, when there
    is no minimal root to enter; raises :class:`SandboxUnavailableError` if entering it fails.
    """
    plan = prepared.root_plan
    if plan is None or prepared.root_inherited or prepared.policy.unconfined:
        return False
    floor = max((*prepared.policy.keep_fds, 2)) + 1
    try:
        opened = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        proc = _dup_above(opened, floor)
        os.close(opened)
    except OSError as exc:
        raise SandboxUnavailableError(f"mountns: cannot open /proc: {exc}") from exc
    own_user_namespace = namespaces.CLONE_NEWUSER | namespaces.CLONE_NEWNS
    try:
        if os.geteuid() != 0:
            namespaces.enter_namespaces(own_user_namespace, proc)
        else:
            try:
                namespaces.unshare(namespaces.CLONE_NEWNS)
            except OSError:
                if prepared.policy.uid is not None:
                    # Its user namespace would map uid 0 alone: children could not drop to
                    # the policy's uid.
                    raise
                namespaces.enter_namespaces(own_user_namespace, proc)
        mountns.enter_root(plan)
    except OSError as exc:
        os.close(proc)
        raise SandboxUnavailableError(f"mountns: cannot enter the minimal root: {exc}") from exc
    prepared.root_inherited = True
    prepared.unshare_flags &= ~namespaces.CLONE_NEWNS
    prepared._proc = proc
    return True


def address_space_bytes() -> int | None:
    """The calling process's virtual size (what RLIMIT_AS counts); None without ``/proc``.

    A forked child starts with its fork server's: ``memory_bytes`` must leave room above it.
    """
    try:
        with open("/proc/self/statm", "rb") as file:
            return int(file.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def _dup_above(fd: int, floor: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)


# --- confine_child --------------------------------------------------------------------------


def _prctl(option: int, value: int, what: str) -> None:
    if _prctl_call(option, value, 0, 0, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _set_no_new_privs() -> None:
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")


def _die_with_parent(parent_pid: int) -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if os.getppid() != parent_pid:
        # The fork server died before the signal was armed; behave as if it had fired.
        os.kill(os.getpid(), signal.SIGKILL)


def _join_cgroup(prepared: PreparedConfinement) -> None:
    # First: the host's view of the cgroup filesystem (through the descriptor) and its own
    # uid, before namespaces and the uid drop.
    cgroup = prepared.cgroup_fd
    if cgroup is not None:
        name = cgroup_name(os.getpid())
        cgroups.join(cgroup, name, prepared.policy.memory_bytes)


def _enter_namespaces(prepared: PreparedConfinement) -> None:
    policy = prepared.policy
    flags = prepared.unshare_flags
    plan = prepared.root_plan if flags & namespaces.CLONE_NEWNS else None
    proc = prepared.proc_fd
    if policy.uid is not None and policy.gid is not None and os.geteuid() == 0:
        if plan is not None:
            # With root's own privileges: the uid to come may not reach the interpreter's files
            # on the host (/root is 0700), while in the minimal root every directory on the
            # way to them is the child's own. The id maps are then written through /proc as
            # it was (closed with every other descriptor later).
            if proc is None:
                proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            namespaces.unshare(namespaces.CLONE_NEWNS)
            mountns.enter_root(plan)
            flags &= ~namespaces.CLONE_NEWNS
            plan = None
        namespaces.drop_to(policy.uid, policy.gid)
        _die_with_parent(prepared.parent_pid)  # changing uid cleared the parent-death signal
    if flags:
        namespaces.enter_namespaces(flags, proc)
    if plan is not None:
        # With the capabilities the new user namespace gave (dropped next).
        mountns.enter_root(plan)


def _drop_capabilities(prepared: PreparedConfinement) -> None:
    namespaces.drop_capabilities()


def _hygiene(prepared: PreparedConfinement) -> None:
    _set_no_new_privs()
    # A process group of its own, so that kill(0) and kill(-pid), which the seccomp program
    # allows, reach nobody else. Not setsid(): with scheduler autogroups (the default) every
    # session gets its own task group, which cost 1.4 ms median and 3.7 ms p90 here, and
    # would give each tenant as much CPU as the whole host session.
    os.setpgid(0, 0)


def _close_descriptors(prepared: PreparedConfinement) -> None:
    keep = set(prepared.policy.keep_fds)
    for fd in keep:
        _refuse_datagram_socket(fd)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep and fd != null:
            os.dup2(null, fd)
    keep.update((0, 1, 2))
    if prepared.ruleset_fd is not None:
        keep.add(prepared.ruleset_fd)
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 0x7FFFFFFF)


def _refuse_datagram_socket(fd: int) -> None:
    try:
        # The C-level type: the socket.socket wrapper costs a fresh child ~30 page faults.
        sock = _socket.socket(fileno=fd)
    except OSError:
        return  # not a socket (a pipe, say)
    kind = sock.type
    sock.detach()
    if kind == _socket.SOCK_DGRAM:
        raise SandboxUnavailableError(
            f"kept descriptor {fd} is a datagram socket, which could send to any pathname "
            "socket; use SOCK_STREAM or SOCK_SEQPACKET"
        )


def _set_rlimits(prepared: PreparedConfinement) -> None:
    policy = prepared.policy
    limits = [
        (resource.RLIMIT_AS, policy.memory_bytes, policy.memory_bytes),
        (resource.RLIMIT_CPU, policy.cpu_seconds, policy.cpu_seconds + 1),
        (resource.RLIMIT_NOFILE, policy.max_files, policy.max_files),
        (resource.RLIMIT_FSIZE, 0, 0),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if prepared.unshare_flags & namespaces.CLONE_NEWUSER:
        # Counted per user namespace, so this bounds this child alone.
        limits.append((resource.RLIMIT_NPROC, _TASKS_IN_USERNS, _TASKS_IN_USERNS))
    for which, soft, hard in limits:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            # Capabilities are gone: a hard limit can only go down from here.
            hard = min(hard, current_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))


def _restrict_filesystem(prepared: PreparedConfinement) -> None:
    ruleset = prepared.ruleset_fd
    if ruleset is None:
        return
    landlock.restrict_self(ruleset)
    os.close(ruleset)


def _not_dumpable(prepared: PreparedConfinement) -> None:
    namespaces.set_dumpable(False)


def _load_seccomp(prepared: PreparedConfinement) -> None:
    if prepared.seccomp is None:
        return
    prepared.seccomp.load_for(os.getpid())


_STEPS: tuple[tuple[str, Callable[[PreparedConfinement], None]], ...] = (
    ("cgroup", _join_cgroup),
    ("namespaces", _enter_namespaces),
    ("capabilities", _drop_capabilities),
    ("hygiene", _hygiene),
    ("descriptors", _close_descriptors),
    ("rlimits", _set_rlimits),
    ("landlock", _restrict_filesystem),
    ("dumpable", _not_dumpable),
    ("seccomp", _load_seccomp),
)


def _apply(prepared: PreparedConfinement, timings: list[tuple[str, int]] | None) -> None:
    """The body of :func:`confine_child`; ``timings`` collects (step, nanoseconds)."""
    start = time.perf_counter_ns()
    _die_with_parent(prepared.parent_pid)
    if timings is not None:
        timings.append(("pdeathsig", time.perf_counter_ns() - start))
    if prepared.policy.unconfined:
        return
    if not prepared.meets_fail_closed_rule:
        raise SandboxUnavailableError(f"prepared confinement is incomplete: {prepared!r}")
    for name, step in _STEPS:
        start = time.perf_counter_ns()
        try:
            step(prepared)
        except OSError as exc:
            raise SandboxUnavailableError(f"{name}: {exc}") from exc
        if timings is not None:
            timings.append((name, time.perf_counter_ns() - start))


def confine_child(prepared: PreparedConfinement) -> None:
    """Confine the calling process, a freshly forked single-threaded child, for good.

    Call it after the child has its socket (listed in ``policy.keep_fds``) and before it
    runs or even receives any tenant code. Raises :class:`SandboxUnavailableError` if a layer
    fails; the child is then half-confined and must exit without running tenant code.

    Fork from the fork server's main thread: the parent-death signal fires when the *thread*
    that forked the child ends. The fork server should have called :func:`gc.freeze` before
    forking: each page the child writes costs it a copy-on-write fault (~5 us on a VM).
    """
    _apply(prepared, None)


def scrubbed_environment() -> dict[str, str]:
    """The whole environment to start the fork server with: nothing inherited, no secrets.

    Forked children share the fork server's environment, and confinement cannot take it
    away (see the module docs), so the fork server must be *executed* with this, e.g.
    ``subprocess.Popen([sys.executable, "-m", ...], env=scrubbed_environment())``.
    """
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
