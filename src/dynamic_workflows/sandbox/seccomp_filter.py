"""The seccomp filters of a confined child: which system calls tenant code may not make.

One classic-BPF program is loaded, built once in the fork server (:func:`build_program`),
made of two parts:

1. :func:`build_filter`, compiled by libseccomp (through ``pyseccomp``) and exported as raw
   BPF, so a child only has to hand the bytes to the kernel (``prctl(PR_SET_SECCOMP)``,
   about 20 us) instead of linking and compiling a filter (about 1 ms). Default *allow*;
   denied with ``EPERM`` (``ENOSYS`` for ``clone3``, so glibc falls back to ``clone``):

   - new processes and programs: ``fork``, ``vfork``, ``execve``, ``execveat``, ``clone``
     without ``CLONE_THREAD`` or with any ``CLONE_NEW*`` flag; threads keep working.
   - the network: ``socket``/``socketpair`` of any family but ``AF_UNIX``, and of
     ``AF_UNIX`` datagram type (an unconnected datagram socket can ``sendmsg`` to any
     pathname socket, and ``sendmsg``'s address sits behind a pointer no filter can read);
     ``connect``, ``bind``, ``listen``, ``accept``, ``accept4``; ``sendto`` with an address.
   - other processes: ``ptrace``, ``process_vm_readv/writev``, ``process_madvise``,
     ``process_mrelease``, ``kcmp``, ``pidfd_open``, ``pidfd_getfd``, ``pidfd_send_signal``,
     ``tkill``, ``migrate_pages``, ``move_pages``, ``ioprio_set``; ``fcntl(F_SETOWN[_EX])``
     and the matching ioctls (SIGIO aimed elsewhere); ``prctl(PR_SET_PDEATHSIG)`` and
     ``prctl(PR_SET_DUMPABLE)`` (a tenant must neither outlive the fork server nor become
     traceable again).
   - kernel attack surface: ``io_uring_*``, ``bpf``, ``perf_event_open``, ``userfaultfd``,
     ``keyctl``, ``add_key``, ``request_key``, ``inotify_*`` and ``fanotify_*`` (a watch
     reveals the names of files created in directories Landlock keeps unreadable),
     System V IPC and POSIX message queues, ``modify_ldt``, ``syslog``.
   - the system: ``unshare``, ``setns``, ``mount`` and the new mount API, ``umount2``,
     ``pivot_root``, ``chroot``, ``kexec_*``, module loading, ``reboot``, ``swapon/off``,
     ``acct``, ``quotactl``, ``open_by_handle_at``, ``name_to_handle_at``, clock setting,
     ``iopl``/``ioperm``; ``ioctl(TIOCSTI)`` and ``ioctl(TIOCLINUX)``.

   Calls for another architecture (``int 0x80`` on x86-64) and x32 calls kill the process.

2. in front of it, a hand-assembled prefix whose only variable is the child's own pid,
   patched in per child. ``kill``, ``tgkill``, ``rt_sigqueueinfo`` and ``rt_tgsigqueueinfo``
   may only aim at the child itself (``kill`` also at 0 and ``-pid``, its own process group
   after ``setpgid(0, 0)``); ``prlimit64`` and ``sched_set{affinity,scheduler,param,attr}`` only at
   0 or itself; ``setpriority`` only ``PRIO_PROCESS`` of 0 or itself. A child that kept the
   fork server's uid (a root fork server that does not drop to a per-child uid) could
   otherwise signal, renice or lower the limits of every process of that uid: credentials
   alone allow it, and Landlock (ABI >= 6) scopes only signals.

A denial of the prefix is final; anything it lets through goes on to the deny-list filter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["LoadableProgram", "SeccompProgram", "build_filter", "build_program", "load"]

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ERRNO = 0x00050000

_CLONE_THREAD = 0x00010000
_CLONE_NEW_FLAGS = (
    0x00000080,  # CLONE_NEWTIME
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
_LOW32 = 0xFFFFFFFF
_SOCK_TYPE_MASK = 0xF
_DENIED_IOCTLS = (
    0x5412,  # TIOCSTI: push input into a terminal
    0x541C,  # TIOCLINUX
    0x8901,  # FIOSETOWN
    0x8902,  # SIOCSPGRP
)
_DENIED_FCNTLS = (8, 15)  # F_SETOWN, F_SETOWN_EX
_DENIED_PRCTLS = (1, 4)  # PR_SET_PDEATHSIG, PR_SET_DUMPABLE

_DENIED = (
    # processes and programs
    "fork", "vfork", "execve", "execveat",
    # the network (socket and socketpair are filtered by argument below)
    "connect", "bind", "listen", "accept", "accept4",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "process_mrelease",
    "kcmp", "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "tkill",
    "migrate_pages", "move_pages", "ioprio_set",
    # kernel attack surface
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open",
    "userfaultfd", "keyctl", "add_key", "request_key",
    "inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_init", "fanotify_mark",
    "shmget", "shmat", "shmctl", "shmdt", "semget", "semop", "semtimedop", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    "modify_ldt", "syslog",
    # the system
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr",
    "mount_setattr", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "open_by_handle_at", "name_to_handle_at", "settimeofday", "clock_settime",
    "clock_adjtime", "iopl", "ioperm",
)  # fmt: skip

# Syscalls newer than the libseccomp Debian 12 ships; numbers from 424 on are the same on
# every architecture but alpha.
_GENERIC_NUMBERS = {"open_tree_attr": 467}


def _pyseccomp() -> Any:
    # Imported on first use: a machine without libseccomp still gets a report saying so.
    import pyseccomp  # type: ignore[import-untyped]

    return pyseccomp


def _number(sc: Any, arch: int, name: str) -> int | None:
    number = int(sc.resolve_syscall(arch, name))
    if number < 0:
        return _GENERIC_NUMBERS.get(name)
    return number


def _clone_flags_arg(arch: int) -> int:
    # s390 swaps clone's first two arguments; everywhere else the flags come first.
    return 1 if arch in (0x16, 0x80000016) else 0  # AUDIT_ARCH_S390, AUDIT_ARCH_S390X


def build_filter() -> bytes:
    """Compile the deny-list filter for this machine's architecture; returns raw BPF.

    Raises :class:`ImportError` or :class:`OSError` when libseccomp is missing or broken.
    """
    sc = _pyseccomp()
    arch = int(sc.system_arch())
    flt = sc.SyscallFilter(sc.ALLOW)
    # A multi-threaded process must die whole, not just the thread that tried.
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    try:
        # A binary tree of syscall numbers instead of a chain: the kernel attaches it in
        # ~0.17 ms instead of ~0.27 ms, and every filtered call walks fewer instructions.
        flt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    except OSError:  # libseccomp < 2.5: the chain is as safe, only slower
        pass
    eperm = sc.ERRNO(errno.EPERM)

    def deny(name: str, *args: Any, action: int = eperm) -> None:
        number = _number(sc, arch, name)
        if number is not None:  # not a syscall of this architecture (fork on arm64...)
            flt.add_rule(action, number, *args)

    for name in _DENIED:
        deny(name)
    deny("clone3", action=sc.ERRNO(errno.ENOSYS))
    flags = _clone_flags_arg(arch)
    deny("clone", sc.Arg(flags, sc.MASKED_EQ, _CLONE_THREAD, 0))
    for flag in _CLONE_NEW_FLAGS:
        deny("clone", sc.Arg(flags, sc.MASKED_EQ, flag, flag))
    for name in ("socket", "socketpair"):
        deny(name, sc.Arg(0, sc.NE, socket.AF_UNIX))
        for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):  # AF_UNIX turns RAW into DGRAM
            deny(name, sc.Arg(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, int(kind)))
    deny("sendto", sc.Arg(4, sc.NE, 0))
    # The kernel reads these arguments as 32-bit ints: compare only the low half, or a
    # tenant could set a high bit to slip past an equality test.
    for cmd in _DENIED_IOCTLS:
        deny("ioctl", sc.Arg(1, sc.MASKED_EQ, _LOW32, cmd))
    for cmd in _DENIED_FCNTLS:
        deny("fcntl", sc.Arg(1, sc.MASKED_EQ, _LOW32, cmd))
    for option in _DENIED_PRCTLS:
        deny("prctl", sc.Arg(0, sc.MASKED_EQ, _LOW32, option))

    fd = os.memfd_create("dwf-seccomp-bpf", os.MFD_CLOEXEC)
    try:
        with os.fdopen(fd, "rb", closefd=False) as file:
            flt.export_bpf(file)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


# --- the per-child pid prefix ---------------------------------------------------------------

_BPF_LD_W_ABS = 0x20
_BPF_JA = 0x05
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
_INSN = struct.Struct("=HBBI")
_SELF, _NEG_SELF = "<pid>", "<-pid>"  # placeholders for the pid, patched per child


@dataclass(frozen=True)
class SeccompProgram:
    """The child's whole seccomp program: the pid prefix, then the exported deny-list filter.

    One program, loaded once: every filter the kernel attaches costs about 0.2 ms (it is
    JIT-compiled), so the pid checks run as a prefix whose "allow" falls through to the
    deny-list filter instead of being a second filter. Verdicts are the same as stacking.
    """

    prefix: bytes
    """The pid prefix with 0 where the pid goes."""
    self_offsets: tuple[int, ...]
    """Byte offsets in :attr:`prefix` of the ``k`` fields that receive the pid."""
    neg_self_offsets: tuple[int, ...]
    """Byte offsets of the ``k`` fields that receive ``-pid`` (as an unsigned 32-bit value)."""
    filter: bytes
    """The deny-list filter exported by libseccomp (:func:`build_filter`)."""

    def for_pid(self, pid: int) -> bytes:
        """The raw BPF program for the process ``pid`` (the child's own pid)."""
        code = bytearray(self.prefix)
        for offset in self.self_offsets:
            struct.pack_into("=I", code, offset, pid & _LOW32)
        for offset in self.neg_self_offsets:
            struct.pack_into("=I", code, offset, -pid & _LOW32)
        return bytes(code) + self.filter


class _Assembler:
    """Just enough of a classic-BPF assembler: loads, forward jumps to labels, returns."""

    def __init__(self) -> None:
        self.insns: list[tuple[int, str | None, str | None, int | str]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.insns)

    def load(self, offset: int) -> None:
        self.insns.append((_BPF_LD_W_ABS, None, None, offset))

    def jeq(self, k: int | str, true: str, false: str | None = None) -> None:
        self.insns.append((_BPF_JEQ_K, true, false, k))

    def jump(self, target: str) -> None:
        self.insns.append((_BPF_JA, None, None, target))

    def ret(self, value: int) -> None:
        self.insns.append((_BPF_RET_K, None, None, value))

    def assemble(self) -> tuple[bytes, tuple[int, ...], tuple[int, ...]]:
        code = bytearray()
        self_offsets: list[int] = []
        neg_offsets: list[int] = []
        for index, (op, true, false, k) in enumerate(self.insns):
            jt = self.labels[true] - index - 1 if true else 0
            jf = self.labels[false] - index - 1 if false else 0
            if not (0 <= jt < 256 and 0 <= jf < 256):
                raise ValueError("BPF jump out of range")
            if op == _BPF_JA:
                k = self.labels[str(k)] - index - 1
            elif k == _SELF:
                self_offsets.append(len(code) + 4)
            elif k == _NEG_SELF:
                neg_offsets.append(len(code) + 4)
            code += _INSN.pack(op, jt, jf, k if isinstance(k, int) else 0)
        return bytes(code), tuple(self_offsets), tuple(neg_offsets)


def build_program() -> SeccompProgram:
    """Build the child's seccomp program for this machine's architecture.

    Raises :class:`ImportError` or :class:`OSError` when libseccomp is missing or broken.
    """
    sc = _pyseccomp()
    arch = int(sc.system_arch())
    # struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
    # Only the low 32 bits of each argument matter: these calls take a pid_t or an int.
    low = 0 if sys.byteorder == "little" else 4

    def arg(index: int) -> int:
        return 16 + 8 * index + low

    asm = _Assembler()
    asm.load(4)
    asm.jeq(arch, "dispatch", "next")  # a foreign architecture: the filter after us kills it
    asm.label("dispatch")
    asm.load(0)
    targets = {
        "kill": "kill",
        "tgkill": "self",
        "rt_sigqueueinfo": "self",
        "rt_tgsigqueueinfo": "self",
        "prlimit64": "zero_or_self",
        "sched_setaffinity": "zero_or_self",
        "sched_setscheduler": "zero_or_self",
        "sched_setparam": "zero_or_self",
        "sched_setattr": "zero_or_self",
        "setpriority": "setpriority",
    }
    for name, target in targets.items():
        number = _number(sc, arch, name)
        if number is not None:
            asm.jeq(number, target)
    asm.jump("next")

    asm.label("kill")  # kill(0) and kill(-pid) reach our own process group: just us
    asm.load(arg(0))
    asm.jeq(0, "next")
    asm.jeq(_NEG_SELF, "next")
    asm.jeq(_SELF, "next", "deny")
    asm.label("zero_or_self")
    asm.load(arg(0))
    asm.jeq(0, "next")
    asm.label("self")
    asm.load(arg(0))
    asm.jeq(_SELF, "next", "deny")
    asm.label("setpriority")  # setpriority(which, who, prio): only PRIO_PROCESS of us
    asm.load(arg(0))
    asm.jeq(0, "setpriority_who", "deny")
    asm.label("setpriority_who")
    asm.load(arg(1))
    asm.jeq(0, "next")
    asm.jeq(_SELF, "next", "deny")
    asm.label("deny")
    asm.ret(_SECCOMP_RET_ERRNO | errno.EPERM)
    asm.label("next")  # the first instruction of the deny-list filter
    prefix, self_offsets, neg_offsets = asm.assemble()
    return SeccompProgram(prefix, self_offsets, neg_offsets, build_filter())


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


# Resolved at import, in the fork server, so that no child has to look the symbol up.
_LIBC = ctypes.CDLL(None, use_errno=True)
_prctl = _LIBC.prctl
_prctl.argtypes = (
    ctypes.c_int, ctypes.c_ulong, ctypes.POINTER(_SockFprog), ctypes.c_ulong, ctypes.c_ulong,
)  # fmt: skip
_prctl.restype = ctypes.c_int


class LoadableProgram:
    """A :class:`SeccompProgram` laid out in C memory by the fork server, ready to load.

    A child patches its pid into the buffer in place and hands it to the kernel: every
    Python object a fresh child creates or touches costs it a copy-on-write page fault
    (about 5 us on a VM), and building the bytes per child cost ~40 of them.
    """

    __slots__ = ("_buffer", "_fprog", "_neg_self_offsets", "_self_offsets")

    def __init__(self, program: SeccompProgram) -> None:
        code = program.prefix + program.filter
        self._buffer = ctypes.create_string_buffer(code, len(code))
        self._fprog = _SockFprog(len(code) // _INSN.size, ctypes.addressof(self._buffer))
        self._self_offsets = program.self_offsets
        self._neg_self_offsets = program.neg_self_offsets

    def load_for(self, pid: int) -> None:
        """Load the program for ``pid`` (the caller's own pid) as this thread's filter.

        Requires ``PR_SET_NO_NEW_PRIVS`` (or ``CAP_SYS_ADMIN``). Irreversible.
        """
        for offset in self._self_offsets:
            struct.pack_into("=I", self._buffer, offset, pid & _LOW32)
        for offset in self._neg_self_offsets:
            struct.pack_into("=I", self._buffer, offset, -pid & _LOW32)
        _load(self._fprog)


def _load(fprog: _SockFprog) -> None:
    if _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, fprog, 0, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {os.strerror(err)}")


def load(program: bytes) -> None:
    """Install a raw BPF program as a seccomp filter on the calling thread (and its future
    threads). Requires ``PR_SET_NO_NEW_PRIVS`` (or ``CAP_SYS_ADMIN``). Irreversible."""
    buffer = ctypes.create_string_buffer(program, len(program))
    _load(_SockFprog(len(program) // _INSN.size, ctypes.addressof(buffer)))
