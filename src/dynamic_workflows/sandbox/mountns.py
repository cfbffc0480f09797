"""A private mount namespace whose root holds only what tenant code needs.

Landlock refuses to *open* what it does not grant, but ``stat``, ``access``, ``readlink`` and
``statfs`` of any path still answered: another tenant's files could be found and sized, and
the host's layout read. In a private mount namespace whose root is a fresh tmpfs holding
read-only bind mounts of the granted paths alone (the standard library, site-packages, this
package, the shared libraries and their cache, zoneinfo) and of ``/dev/null`` and
``/dev/urandom``, the rest of the host's filesystem does not exist: every other path is
``ENOENT``. There is no ``/proc`` (a worker's own accounting files are opened before, through a
descriptor of the host's ``/proc`` that it closes before tenant code runs), no ``/tmp``, no
``/etc/passwd``, no home directories. Each bind mount lands at its own path, so the paths the
interpreter and Landlock know stay valid (Landlock's rules follow inodes, which bind mounts
share).

::

    plan = plan_root(paths)     # once (prepare): what to bind, which symlinks to recreate
    enter_root(plan)            # after unshare(CLONE_NEWNS), with CAP_SYS_ADMIN over it

:func:`enter_root` follows bubblewrap: a tmpfs on a staging directory becomes the root with the
old one kept beneath it (``pivot_root``), a second tmpfs is filled with the bind mounts (each
remounted read-only, keeping the flags the kernel locks for a less privileged namespace), and
becomes the root in turn; the old root is detached (``umount2(MNT_DETACH)``) and the new one
remounted read-only. Propagation is made private first, so nothing leaks back to the host.

Cost (2-core VM, kernel 6.18): ~1 ms in a fresh child, most of it the mounts of nine paths. The
fork server pays it once for itself and every worker (:func:`~.confine.enter_fork_server_root`):
workers share its mount namespace and cannot change it (no capability over it, and seccomp
denies ``mount``, ``umount2``, ``pivot_root``, ``unshare``, ``setns``).
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DEVICES", "RootPlan", "enter_root", "plan_root", "supported"]

DEVICES = ("/dev/null", "/dev/urandom")
"""Device files bound into every root."""

_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_NOATIME = 0x400
_MS_NODIRATIME = 0x800
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MS_RELATIME = 0x200000
_MNT_DETACH = 0x2
_STATVFS_FLAGS = (
    # What a remount must keep: the kernel locks them on mounts a less privileged namespace got.
    (os.ST_NOSUID, _MS_NOSUID),
    (os.ST_NODEV, _MS_NODEV),
    (os.ST_NOEXEC, _MS_NOEXEC),
    (os.ST_NOATIME, _MS_NOATIME),
    (os.ST_NODIRATIME, _MS_NODIRATIME),
    (os.ST_RELATIME, _MS_RELATIME),
)
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_STAGING = ("/tmp", "/mnt", "/run", "/var/tmp", "/dev")
"""Directories a staging tmpfs may be mounted on (the first that exists): the namespace is
private, so what it hides there is hidden from this process alone, and only until it is gone."""

_LIBC = ctypes.CDLL(None, use_errno=True)
_mount = _LIBC.mount
_mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
_mount.restype = ctypes.c_int
_umount2 = _LIBC.umount2
_umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_umount2.restype = ctypes.c_int
_LIBC.syscall.restype = ctypes.c_long


def supported() -> bool:
    """Whether this architecture's ``pivot_root`` is known here."""
    return platform.machine() in _SYS_PIVOT_ROOT


@dataclass(frozen=True)
class Bind:
    """One path bound read-only into the root, at the same path."""

    path: str
    directory: bool
    flags: int
    """Mount flags of the source to keep on the read-only remount (see _STATVFS_FLAGS)."""


@dataclass(frozen=True)
class RootPlan:
    """What :func:`enter_root` builds: computed once, applied by each process that enters it."""

    binds: tuple[Bind, ...]
    links: tuple[tuple[str, str], ...]
    """Symbolic links on the way to a bound path (``/lib -> usr/lib``), recreated as they are."""

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths bound."""
        return tuple(bind.path for bind in self.binds)


def plan_root(paths: Iterable[str]) -> RootPlan:
    """The root for ``paths`` (missing ones skipped) and :data:`DEVICES`.

    Each path is bound at its real location (symbolic links resolved, and recreated on the way),
    once: a path beneath another bound directory comes with it.
    """
    links: dict[str, str] = {}
    real_paths: list[str] = []
    for path in (*paths, *DEVICES):
        path = os.path.abspath(path)
        if not os.path.exists(path):
            continue
        current = ""
        for part in path.strip("/").split("/"):
            current = os.path.join(current or "/", part)
            if os.path.islink(current):
                links[current] = os.readlink(current)
                current = os.path.realpath(current)
        real_paths.append(os.path.realpath(path))
    binds: list[Bind] = []
    for real in sorted(set(real_paths)):
        if any(real.startswith(bind.path + "/") for bind in binds if bind.directory):
            continue
        info = os.stat(real)
        flags = 0
        fs_flags = os.statvfs(real).f_flag
        for st_flag, ms_flag in _STATVFS_FLAGS:
            if fs_flags & st_flag:
                flags |= ms_flag
        binds.append(Bind(real, stat.S_ISDIR(info.st_mode), flags))
    return RootPlan(tuple(binds), tuple(sorted(links.items())))


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_call(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            flags,
            None if data is None else data.encode(),
        ),
        f"mount({source}, {target})",
    )


def _pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(0, f"pivot_root: unknown on {platform.machine()}")
    _check(
        _LIBC.syscall(ctypes.c_long(number), new_root.encode(), put_old.encode()),
        f"pivot_root({new_root}, {put_old})",
    )


def _make_parents(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)


def enter_root(plan: RootPlan) -> None:
    """Make the calling process's root the one ``plan`` describes, for good.

    The caller has just unshared its mount namespace (``CLONE_NEWNS``) and holds
    ``CAP_SYS_ADMIN`` over it (root, or a fresh user namespace). Its working directory ends at
    ``/``. Raises :class:`OSError` if a step fails (the namespace is then half built: the
    caller must not run tenant code).
    """
    staging = next((d for d in _STAGING if os.path.isdir(d)), None)
    if staging is None:
        raise OSError(0, f"no directory to stage a root on (tried {', '.join(_STAGING)})")
    _mount_call(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount_call("tmpfs", staging, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=64k")
    os.chdir(staging)
    os.mkdir("new", 0o755)
    os.mkdir("old", 0o755)
    _pivot_root(".", "old")
    os.chdir("/")
    # The root to be: a tmpfs of its own (pivot_root wants a mount point), a few inodes only.
    _mount_call(
        "tmpfs", "/new", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=64k,nr_inodes=512"
    )
    for link, target in plan.links:
        _make_parents("/new" + link)
        os.symlink(target, "/new" + link)
    for bind in plan.binds:
        target = "/new" + bind.path
        if bind.directory:
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            _make_parents(target)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o444))
        _mount_call("/old" + bind.path, target, None, _MS_BIND | _MS_REC)
        _mount_call(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | bind.flags)
    os.chdir("/new")
    _pivot_root(".", ".")
    # The staging root (with the old root beneath it) now sits on top of the new one: gone.
    _check(_umount2(b".", _MNT_DETACH), "umount2(old root)")
    os.chdir("/")
    _mount_call(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
