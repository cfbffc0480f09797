"""PostgreSQL for the benchmarks: the server, and a fresh database per measurement.

The server is ``$DWF_BENCH_POSTGRES`` (default: the local one, ``127.0.0.1:5432``, user postgres,
database ``test``, which is only used to create and drop ours). Every measurement gets a database
of its own, ``dwf_bench_<random>``, created empty and dropped afterwards (``WITH (FORCE)``, so a
process that died holding connections does not leave it behind); no other database is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"
PREFIX = "dwf_bench_"


def server_url() -> str:
    return os.environ.get("DWF_BENCH_POSTGRES", DEFAULT_URL)


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def unavailable_reason(url: str | None = None) -> str | None:
    """Why the server cannot be used (None when it can)."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed"
    try:
        asyncio.run(_admin(url or server_url(), "SELECT 1"))
    except Exception as exc:  # any failure to connect: the rows say so
        return f"PostgreSQL not reachable at {redact(url or server_url())}: {exc}"[:200]
    return None


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def new_name() -> str:
    return PREFIX + secrets.token_hex(4)


def _check_ours(name: str) -> None:
    if not (name.startswith(PREFIX) and name[len(PREFIX) :].isalnum()):
        raise ValueError(f"not a benchmark database: {name!r}")


async def create(name: str, url: str | None = None) -> str:
    """Create database ``name`` on the server; its URL."""
    _check_ours(name)
    server = url or server_url()
    await _admin(server, f'CREATE DATABASE "{name}"')
    return with_database(server, name)


async def drop(name: str, url: str | None = None) -> None:
    """Drop database ``name`` (one of ours), closing whatever is still connected to it."""
    _check_ours(name)
    await _admin(url or server_url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty database for the block (from synchronous code, outside any event loop)."""
    name = new_name()
    url = asyncio.run(create(name))
    try:
        yield url
    finally:
        asyncio.run(drop(name))
