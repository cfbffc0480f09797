"""Creating processes, running programs, and reaching other processes or the kernel."""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import subprocess

from . import Context, Result, failed, syscall, syscall_attempt

_PTRACE_ATTACH, _PTRACE_DETACH = 16, 17
_CLONE_NEWUSER = 0x10000000


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _errno() -> str:
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def fork(ctx: Context) -> Result:
    """os.fork()."""
    try:
        pid = os.fork()
    except OSError as exc:
        return failed("fork", exc)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return True, "forked a child"


def fork_bomb(ctx: Context) -> Result:
    """os.fork() in a loop: the very first one must fail."""
    created = 0
    for _ in range(20):
        try:
            pid = os.fork()
        except OSError as exc:
            _, detail = failed(f"fork after {created} children", exc)
            return created > 0, detail
        if pid == 0:
            os._exit(0)
        created += 1
    return True, f"forked {created} children"


def run_subprocess(ctx: Context) -> Result:
    """subprocess.run(['/bin/true'])."""
    try:
        done = subprocess.run(["/bin/true"], check=False)
    except OSError as exc:
        return failed("subprocess", exc)
    return True, f"/bin/true exited {done.returncode}"


def execv(ctx: Context) -> Result:
    """os.execv('/bin/true'): if it works, the child never reports and exits 0."""
    try:
        os.execv("/bin/true", ["true"])
    except OSError as exc:
        return failed("execv", exc)
    return True, "unreachable"


def posix_spawn(ctx: Context) -> Result:
    """os.posix_spawn('/bin/true')."""
    try:
        pid = os.posix_spawn("/bin/true", ["true"], {})
    except OSError as exc:
        return failed("posix_spawn", exc)
    os.waitpid(pid, 0)
    return True, "spawned /bin/true"


def clone3(ctx: Context) -> Result:
    """A raw clone3 without CLONE_THREAD: a fork glibc cannot see."""
    args = (ctypes.c_uint64 * 11)()
    args[4] = signal.SIGCHLD  # exit_signal
    result, err = syscall("clone3", ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if result == 0:
        os._exit(0)
    if result < 0:
        return False, f"clone3: {errno.errorcode.get(err, err)}"
    os.waitpid(result, 0)
    return True, "clone3 created a process"


def ptrace_parent(ctx: Context) -> Result:
    """ptrace(PTRACE_ATTACH) of the fork server."""
    libc = _libc()
    libc.ptrace.restype = ctypes.c_long
    pid = ctypes.c_long(ctx["parent_pid"])
    if libc.ptrace(ctypes.c_long(_PTRACE_ATTACH), pid, None, None) < 0:
        return False, f"ptrace: {_errno()}"
    libc.ptrace(ctypes.c_long(_PTRACE_DETACH), pid, None, None)
    return True, "attached to the parent"


def parent_memory(ctx: Context) -> Result:
    """/proc/<ppid>/mem of the fork server."""
    try:
        with open(f"/proc/{ctx['parent_pid']}/mem", "rb"):
            pass
    except OSError as exc:
        return failed("open(/proc/<ppid>/mem)", exc)
    return True, "opened the parent's memory"


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def process_vm_readv(ctx: Context) -> Result:
    """process_vm_readv of the fork server's memory (at an address both share since the fork)."""
    marker = b"fork-server-memory"
    local_buffer = ctypes.create_string_buffer(8)
    local = _IoVec(ctypes.addressof(local_buffer), 8)
    remote = _IoVec(id(marker), 8)
    return syscall_attempt(
        "process_vm_readv", ctypes.c_long(ctx["parent_pid"]), ctypes.byref(local),
        ctypes.c_ulong(1), ctypes.byref(remote), ctypes.c_ulong(1), ctypes.c_ulong(0),
    )  # fmt: skip


def kill_parent(ctx: Context) -> Result:
    """SIGTERM to the fork server."""
    try:
        os.kill(ctx["parent_pid"], signal.SIGTERM)
    except OSError as exc:
        return failed("kill(ppid, SIGTERM)", exc)
    return True, "signalled the parent"


def signal_everyone(ctx: Context) -> Result:
    """kill(-1, 0): could this process signal every process it may? (signal 0 is harmless)."""
    try:
        os.kill(-1, 0)
    except OSError as exc:
        return failed("kill(-1, 0)", exc)
    return True, "kill(-1) is allowed"


def signal_parent_group(ctx: Context) -> Result:
    """kill(-pgid, 0) of the fork server's process group (signal 0: a harmless probe)."""
    try:
        os.killpg(os.getpgid(ctx["parent_pid"]), 0)
    except OSError as exc:
        return failed("killpg(parent's group, 0)", exc)
    return True, "may signal the parent's process group"


def pidfd_parent(ctx: Context) -> Result:
    """pidfd_open of the fork server (for pidfd_send_signal, pidfd_getfd)."""
    try:
        os.close(os.pidfd_open(ctx["parent_pid"]))
    except OSError as exc:
        return failed("pidfd_open", exc)
    return True, "opened a pidfd on the parent"


def prlimit_parent(ctx: Context) -> Result:
    """Read (and so be allowed to set) the fork server's rlimits."""
    try:
        limits = resource.prlimit(ctx["parent_pid"], resource.RLIMIT_CORE)
    except OSError as exc:
        return failed("prlimit(ppid)", exc)
    return True, f"read the parent's RLIMIT_CORE {limits}"


def renice_parent(ctx: Context) -> Result:
    """setpriority of the fork server (to its own current value: harmless if it works)."""
    try:
        nice = os.getpriority(os.PRIO_PROCESS, ctx["parent_pid"])
        os.setpriority(os.PRIO_PROCESS, ctx["parent_pid"], nice)
    except OSError as exc:
        return failed("setpriority(ppid)", exc)
    return True, "reniced the parent"


def pin_parent(ctx: Context) -> Result:
    """sched_setaffinity of the fork server (to its own current set)."""
    try:
        os.sched_setaffinity(ctx["parent_pid"], os.sched_getaffinity(ctx["parent_pid"]))
    except OSError as exc:
        return failed("sched_setaffinity(ppid)", exc)
    return True, "set the parent's CPU affinity"


def outlive_parent(ctx: Context) -> Result:
    """prctl(PR_SET_PDEATHSIG, 0): survive the fork server."""
    libc = _libc()
    if libc.prctl(1, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)):
        return False, f"prctl(PR_SET_PDEATHSIG): {_errno()}"
    return True, "cleared the parent-death signal"


def unshare_user_namespace(ctx: Context) -> Result:
    """unshare(CLONE_NEWUSER): a nested user namespace, full capabilities inside."""
    if _libc().unshare(_CLONE_NEWUSER) < 0:
        return False, f"unshare: {_errno()}"
    return True, "unshared a user namespace"


def mount_tmpfs(ctx: Context) -> Result:
    """mount a tmpfs (on a directory of the test)."""
    libc = _libc()
    if libc.mount(b"none", ctx["mount_point"].encode(), b"tmpfs", ctypes.c_ulong(0), None) < 0:
        return False, f"mount: {_errno()}"
    return True, "mounted a tmpfs"


def chroot(ctx: Context) -> Result:
    """chroot('/')."""
    try:
        os.chroot("/")
    except OSError as exc:
        return failed("chroot", exc)
    return True, "chrooted"


def io_uring(ctx: Context) -> Result:
    """io_uring_setup: an interface with a long record of kernel bugs."""
    params = (ctypes.c_uint8 * 120)()
    return syscall_attempt("io_uring_setup", ctypes.c_uint(8), ctypes.byref(params))


def bpf(ctx: Context) -> Result:
    """bpf(BPF_MAP_CREATE) of a one-entry array."""
    attr = (ctypes.c_uint32 * 32)(2, 4, 4, 1)  # BPF_MAP_TYPE_ARRAY, key 4, value 4, 1 entry
    return syscall_attempt("bpf", ctypes.c_int(0), ctypes.byref(attr), ctypes.c_uint(128))


def perf_event_open(ctx: Context) -> Result:
    """perf_event_open of a software clock on this very process."""
    attr = (ctypes.c_uint32 * 32)()
    attr[0], attr[1] = 1, 128  # PERF_TYPE_SOFTWARE, size; config 0 = PERF_COUNT_SW_CPU_CLOCK
    return syscall_attempt(
        "perf_event_open", ctypes.byref(attr), ctypes.c_int(0), ctypes.c_int(-1),
        ctypes.c_int(-1), ctypes.c_ulong(0),
    )  # fmt: skip


def keyctl(ctx: Context) -> Result:
    """keyctl(KEYCTL_GET_KEYRING_ID) of the session keyring (kernel-held secrets)."""
    return syscall_attempt("keyctl", ctypes.c_int(0), ctypes.c_int(-3), ctypes.c_int(1))


def userfaultfd(ctx: Context) -> Result:
    """userfaultfd: a favourite of kernel exploits for winning races."""
    return syscall_attempt("userfaultfd", ctypes.c_int(0))


def kernel_log(ctx: Context) -> Result:
    """syslog(SYSLOG_ACTION_SIZE_BUFFER): the host's kernel log."""
    return syscall_attempt("syslog", ctypes.c_int(10), None, ctypes.c_int(0))
