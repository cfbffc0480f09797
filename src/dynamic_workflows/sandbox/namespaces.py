"""Identity and namespaces of a confined child: its own user, network, IPC and UTS namespaces.

A child that unshares a user namespace gets a private network namespace (only a downed
loopback, no route to anything), a private System V IPC and POSIX message-queue space, and a
private hostname, without needing root. Its ids are mapped one to one (inner id == outer id),
so files it reads are checked against the same owner it had before.

Capabilities: ``unshare(CLONE_NEWUSER)`` hands the caller every capability *inside* the new
namespace, and a fork server running as root would keep every capability of the host. Either
way :func:`drop_capabilities` empties the effective, permitted and inheritable sets; with no
``execve`` left (seccomp denies it) they can never come back.

All of this runs in a freshly forked, single-threaded child: ``unshare(CLONE_NEWUSER)``
refuses a multi-threaded caller.
"""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "drop_capabilities",
    "drop_to",
    "enter_namespaces",
    "set_dumpable",
    "unshare",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

_PR_SET_DUMPABLE = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


# Prototypes resolved at import, in the fork server: a child that had to look the symbols up
# itself would pay ~40 more copy-on-write page faults (about 0.2 ms).
_LIBC = ctypes.CDLL(None, use_errno=True)
_unshare = _LIBC.unshare
_unshare.argtypes = (ctypes.c_int,)
_unshare.restype = ctypes.c_int
_capset = _LIBC.capset
_capset.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
_capset.restype = ctypes.c_int
_prctl = _LIBC.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int

# Built once, read-only: capset reads both and writes neither when the version is right.
_NO_CAPS_HEADER = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
_NO_CAPS = (_CapData * 2)()


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    """``unshare(2)``; Python 3.11 has no ``os.unshare``. Raises :class:`OSError`."""
    _check(_unshare(flags), f"unshare({flags:#x})")


def set_dumpable(dumpable: bool) -> None:
    """``prctl(PR_SET_DUMPABLE)``.

    Non-dumpable processes cannot be ptraced or have their ``/proc`` files opened by processes
    of the same uid, and their ``/proc/self`` files belong to root.
    """
    _check(_prctl(_PR_SET_DUMPABLE, int(dumpable), 0, 0, 0), "PR_SET_DUMPABLE")


def drop_to(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good (real, effective and saved), with no supplementary groups.

    Only a root fork server can do this. Changing the effective uid makes the kernel mark the
    process non-dumpable and clear its parent-death signal; the caller sets the signal again,
    and dumpable goes back to 1 here because a non-dumpable process's ``/proc/self/uid_map``
    belongs to root, which this process no longer is when it writes its id maps.
    """
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    set_dumpable(True)


def _write(path: str, text: str, proc: int | None) -> None:
    # Through a descriptor of /proc when given: a fork server living in a minimal root (see
    # mountns) has no /proc of its own.
    if proc is None:
        fd = os.open("/proc/" + path, os.O_WRONLY | os.O_CLOEXEC)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_namespaces(flags: int, proc: int | None = None) -> None:
    """Unshare ``flags`` (``CLONE_NEW*``) and, for a new user namespace, map our ids 1:1.

    Only the caller's own uid and gid are mapped: the kernel allows exactly that single
    mapping to a process without capabilities over the parent namespace, and an id map
    that names nobody else means nothing in the namespace can become anybody else.
    ``setgroups`` must be denied before an unprivileged ``gid_map`` write. ``proc``: a
    descriptor of ``/proc`` to write them through (None: the path ``/proc``).
    """
    uid, gid = os.geteuid(), os.getegid()
    unshare(flags)
    if flags & CLONE_NEWUSER:
        _write("self/setgroups", "deny", proc)
        _write("self/uid_map", f"{uid} {uid} 1\n", proc)
        _write("self/gid_map", f"{gid} {gid} 1\n", proc)


def drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable capability sets of this process.

    Permitted capabilities, once dropped, cannot be raised again without an ``execve``.
    The ambient set follows (it must stay a subset of permitted and inheritable).
    """
    _check(_capset(_NO_CAPS_HEADER, _NO_CAPS), "capset")
