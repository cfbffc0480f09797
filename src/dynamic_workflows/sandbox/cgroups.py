"""cgroup v2 limits for each worker, where the machine delegates a subtree; rlimits otherwise.

RLIMIT_AS caps a worker's address space, not the memory it really uses, and RLIMIT_CPU its
total CPU time, not its share of the machine. Where this process's cgroup (cgroup v2) has the
``memory`` and ``cpu`` controllers enabled for its children and is writable by us (delegated:
systemd's ``Delegate=yes``, a container's own cgroup namespace set up so), each worker also
gets a cgroup of its own, ``dwf-w<pid>``, with ``memory.max`` (the worker's memory cap, no swap)
and ``cpu.max`` (one CPU): the kernel then accounts what it really uses, page cache and kernel
memory included, and an allocation past the cap is reclaimed or OOM-kills that worker alone.

::

    found = find_delegation()          # probe: a Delegation, or the reason there is none
    join(dir_fd, name, memory, cpus)   # in a child, before confinement: its own cgroup
    remove(dir_fd, name)               # in the fork server, once the child is reaped

The rlimits stay in force either way (:func:`~.confine.confine_child`); ``dwf doctor`` says
which limits hold. Many machines have none to give: cgroup v1 for memory and cpu (the
controllers are then absent from cgroup v2's ``cgroup.controllers``), or a cgroup that is not
ours to write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["CPU_PERIOD_US", "Delegation", "find_delegation", "join", "remove"]

CPU_PERIOD_US = 100_000
"""The ``cpu.max`` period; a worker's quota is ``cpus`` times it."""
_NEEDED = ("cpu", "memory")


@dataclass(frozen=True)
class Delegation:
    """A cgroup v2 directory whose children may get memory and CPU limits."""

    path: str


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def _cgroup2_mount(mountinfo: str) -> str | None:
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        if fstype == "cgroup2" and len(fields) > 4:
            return fields[4]
    return None


def find_delegation(
    cgroup_file: str = "/proc/self/cgroup", mountinfo_file: str = "/proc/self/mountinfo"
) -> Delegation | str:
    """This process's cgroup v2 directory if workers can get limits beneath it, else why not.

    Beneath it means: cgroup v2 is mounted, this process's cgroup lists ``memory`` and ``cpu``
    in ``cgroup.controllers`` and enables them in ``cgroup.subtree_control``, and we may create
    cgroups there and move processes into them.
    """
    try:
        lines = _read(cgroup_file).splitlines()
        mountinfo = _read(mountinfo_file)
    except OSError as exc:
        return f"cannot read {exc.filename}: {exc.strerror}"
    unified = next((line[3:] for line in lines if line.startswith("0::")), None)
    if unified is None:
        return "this process is in no cgroup v2 hierarchy (cgroup v1 only)"
    mount = _cgroup2_mount(mountinfo)
    if mount is None:
        return "cgroup v2 is not mounted"
    path = os.path.normpath(mount + "/" + unified.strip().lstrip("/"))
    try:
        controllers = _read(os.path.join(path, "cgroup.controllers")).split()
        enabled = _read(os.path.join(path, "cgroup.subtree_control")).split()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    missing = [name for name in _NEEDED if name not in controllers]
    if missing:
        have = " ".join(controllers) or "none"
        return (
            f"cgroup v2 at {path} has no {' or '.join(missing)} controller (it has: {have}; "
            "cgroup v1 may hold them)"
        )
    off = [name for name in _NEEDED if name not in enabled]
    if off:
        return (
            f"{path} does not enable {' and '.join(off)} for its children (cgroup.subtree_control)"
        )
    for name in ("", "cgroup.procs"):
        if not os.access(os.path.join(path, name), os.W_OK):
            return f"{os.path.join(path, name)} is not writable here (not delegated to us)"
    return Delegation(path)


def _write(name: str, text: str, dir_fd: int) -> None:
    # O_CREAT opens a cgroup's own files as they are (a plain folder stands in for tests).
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def join(dir_fd: int, name: str, memory_bytes: int, cpus: float = 1.0) -> None:
    """Create the cgroup ``name`` beneath ``dir_fd`` (a delegated directory), limit it to
    ``memory_bytes`` of memory (no swap) and ``cpus`` CPUs, and move the calling process into
    it. Raises :class:`OSError`."""
    os.mkdir(name, 0o755, dir_fd=dir_fd)
    group = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        _write("memory.max", str(memory_bytes), group)
        try:
            _write("memory.swap.max", "0", group)
        except OSError:  # no swap accounting on this kernel
            pass
        _write("cpu.max", f"{round(cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}", group)
        _write("cgroup.procs", "0", group)
    finally:
        os.close(group)


def remove(dir_fd: int, name: str) -> None:
    """Remove the (empty) cgroup ``name`` beneath ``dir_fd``; nothing if it is gone or busy."""
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError:
        pass
