"""Reading, listing and writing files a tenant has no business with."""

from __future__ import annotations

import ctypes
import errno
import os
import sqlite3

from . import Context, Result, failed


def _read(path: str) -> Result:
    try:
        with open(path, "rb") as file:
            data = file.read(64)
    except OSError as exc:
        return failed(f"open({path})", exc)
    return True, f"read {data[:20]!r}"


def read_etc_passwd(ctx: Context) -> Result:
    """/etc/passwd."""
    return _read("/etc/passwd")


def read_other_tenant_code(ctx: Context) -> Result:
    """Another tenant's workflow code, stored on the host."""
    return _read(ctx["other_tenant_file"])


def list_other_tenant_dir(ctx: Context) -> Result:
    """The listing of another tenant's directory."""
    try:
        names = os.listdir(ctx["other_tenant_dir"])
    except OSError as exc:
        return failed("listdir", exc)
    return True, f"listed {names}"


def read_host_database_file(ctx: Context) -> Result:
    """The host's SQLite database, as raw bytes."""
    return _read(ctx["database"])


def query_host_database(ctx: Context) -> Result:
    """The host's SQLite database, through sqlite3, read-only."""
    try:
        conn = sqlite3.connect(f"file:{ctx['database']}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT value FROM secrets").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return False, f"sqlite3: {type(exc).__name__}: {exc}"
    return True, f"read {rows}"


def parent_environment(ctx: Context) -> Result:
    """The fork server's environment through /proc/<ppid>/environ."""
    return _read(f"/proc/{ctx['parent_pid']}/environ")


def list_root(ctx: Context) -> Result:
    """The listing of /."""
    try:
        names = os.listdir("/")
    except OSError as exc:
        return failed("listdir(/)", exc)
    return True, f"listed {names[:5]}"


def _write(path: str) -> Result:
    try:
        with open(path, "wb") as file:
            file.write(b"escape")
    except OSError as exc:
        return failed(f"open({path}, 'wb')", exc)
    return True, f"wrote {path}"


def write_in_tmp(ctx: Context) -> Result:
    """A file in /tmp."""
    return _write(ctx["write_paths"][0])


def write_in_test_dir(ctx: Context) -> Result:
    """A file in the test's tmp directory (where the host keeps its files)."""
    return _write(ctx["write_paths"][1])


def inotify_watch(ctx: Context) -> Result:
    """An inotify watch on another tenant's directory: names of files created there."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(0)
    if fd < 0:
        return False, f"inotify_init1: {errno.errorcode[ctypes.get_errno()]}"
    try:
        wd = libc.inotify_add_watch(fd, ctx["other_tenant_dir"].encode(), 0x100)  # IN_CREATE
        if wd < 0:
            return False, f"inotify_add_watch: {errno.errorcode[ctypes.get_errno()]}"
    finally:
        os.close(fd)
    return True, "watching another tenant's directory"


def stat_other_tenant_code(ctx: Context) -> Result:
    """The metadata (size, times, owner) of another tenant's file."""
    try:
        info = os.stat(ctx["other_tenant_file"])
    except OSError as exc:
        return failed("stat", exc)
    return True, f"size {info.st_size}, mtime {info.st_mtime}"
