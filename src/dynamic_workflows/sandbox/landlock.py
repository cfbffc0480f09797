"""Landlock: read-only access to the interpreter's files, nothing else, by raw syscalls.

Landlock (Linux >= 5.13) lets an unprivileged process restrict itself and its future children.
The PyPI ``landlock`` package covers only filesystem rights, so this module speaks the three
syscalls (444-446 on every architecture but alpha) through ctypes.

What a ruleset built here does, by ABI version of the running kernel:

- ABI >= 1: every filesystem right the ABI knows is *handled*, and only ``READ_FILE`` and
  ``READ_DIR`` are granted, beneath the directories given. No writes, creations, removals,
  truncations or device ioctls anywhere; no reads outside those directories (``/etc``,
  ``/proc``, ``/tmp``, home directories...). Landlock also forbids ptrace of, and
  ``/proc/<pid>/mem``-style access to, any process outside the domain.
- ABI >= 4: TCP ``bind`` and ``connect`` are handled with no port allowed.
- ABI >= 6: abstract unix sockets and signals are scoped: the child can neither connect to an
  abstract socket nor signal a process created outside its own domain.

``EXECUTE`` is deliberately not granted: it governs ``execve`` alone (``dlopen`` of an
extension module maps it with ``READ_FILE``), and the child never executes a program.

What Landlock does not mediate (so the other layers or nothing covers it): ``stat``,
``access``, ``readlink`` and ``statfs`` of any path (the minimal root of :mod:`.mountns` leaves
no path but the granted ones to ask about; without it metadata leaks, contents do not),
connecting to *pathname* unix sockets (seccomp denies ``connect``), UDP (seccomp denies the
socket), and ``inotify`` (seccomp denies it).

The ruleset is built once by the fork server (:func:`create_ruleset`) and every child only
calls :func:`restrict_self` with the inherited descriptor: about 30 us instead of the ~0.2 ms
it takes to open every path and add every rule.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "KNOWN_ABI",
    "abi_version",
    "create_ruleset",
    "default_read_paths",
    "restrict_self",
]

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

KNOWN_ABI = 7
"""The newest ABI whose rights this module knows; a newer kernel is used at this level."""

_ACCESS_FS_READ_FILE = 1 << 2
_ACCESS_FS_READ_DIR = 1 << 3
# Every right of ABI 1 (execute ... make_sym), then REFER (2), TRUNCATE (3), IOCTL_DEV (5).
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_ACCESS_NET_BIND_TCP = 1 << 0
_ACCESS_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
_SCOPE_SIGNAL = 1 << 1

_FILE_READ = _ACCESS_FS_READ_FILE
_DIR_READ = _ACCESS_FS_READ_FILE | _ACCESS_FS_READ_DIR

# Resolved at import, in the fork server, so that no child has to look the symbol up.
# syscall(2) is variadic: every argument is passed as an explicit ctypes value.
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _syscall(number: int, *args: object, what: str) -> int:
    result = int(_LIBC.syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def abi_version() -> int:
    """The kernel's Landlock ABI version (>= 1); :class:`OSError` if Landlock is absent/off."""
    return _syscall(
        _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION),
        what="landlock_create_ruleset(VERSION)",
    )  # fmt: skip


def _handled_fs(abi: int) -> int:
    return max(rights for level, rights in _FS_RIGHTS_BY_ABI.items() if level <= abi)


def default_read_paths() -> tuple[str, ...]:
    """Paths a forked child needs for lazy imports: stdlib, site-packages, shared libraries.

    The standard library (``lib-dynload`` included) of ``sys.base_prefix``, the environment's
    ``site-packages``, the directory holding this package (an editable install lives outside
    site-packages), the shared libraries and their cache, the zoneinfo database, and
    ``/dev/urandom`` (for code that reads it rather than calling ``getrandom``).
    The current directory and other ``sys.path`` entries are not included: the fork server's
    working directory may hold anything.
    """
    paths: list[str] = []
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    paths += [sysconfig.get_path(name, vars=base) for name in ("stdlib", "platstdlib")]
    paths += [sysconfig.get_path(name) for name in ("purelib", "platlib")]
    package_dir = Path(__file__).resolve().parent.parent
    paths.append(str(package_dir))
    paths += ["/usr/lib", "/lib", "/lib64", "/usr/lib64", "/etc/ld.so.cache"]
    paths += ["/usr/share/zoneinfo", "/dev/urandom"]
    return tuple(dict.fromkeys(paths))


def create_ruleset(abi: int, read_paths: Iterable[str]) -> tuple[int, tuple[str, ...]]:
    """Build a ruleset granting read access beneath ``read_paths`` and nothing else.

    Returns the ruleset descriptor (close-on-exec; the caller owns it) and the paths actually
    granted: missing paths are skipped, and paths reaching the same inode (``/lib`` and
    ``/usr/lib`` on a merged-/usr system) are granted once.
    """
    level = min(abi, KNOWN_ABI)
    attr = _RulesetAttr(handled_access_fs=_handled_fs(level))
    size = 8
    if level >= 4:
        attr.handled_access_net = _ACCESS_NET_BIND_TCP | _ACCESS_NET_CONNECT_TCP
        size = 16
    if level >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
        size = 24
    ruleset = _syscall(
        _SYS_CREATE_RULESET, ctypes.c_void_p(ctypes.addressof(attr)), ctypes.c_size_t(size),
        ctypes.c_uint32(0), what="landlock_create_ruleset",
    )  # fmt: skip
    granted: list[str] = []
    seen: set[tuple[int, int]] = set()
    try:
        for path in read_paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                info = os.fstat(fd)
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                rule = _PathBeneathAttr(
                    allowed_access=_DIR_READ if stat.S_ISDIR(info.st_mode) else _FILE_READ,
                    parent_fd=fd,
                )
                _syscall(
                    _SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                    ctypes.c_void_p(ctypes.addressof(rule)), ctypes.c_uint32(0),
                    what=f"landlock_add_rule({path})",
                )  # fmt: skip
                granted.append(path)
            finally:
                os.close(fd)
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset, tuple(granted)


def restrict_self(ruleset: int) -> None:
    """Enforce ``ruleset`` on the calling thread and every thread or process it creates.

    Requires ``PR_SET_NO_NEW_PRIVS`` (or ``CAP_SYS_ADMIN``). Irreversible.
    """
    _syscall(
        _SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0),
        what="landlock_restrict_self",
    )  # fmt: skip
