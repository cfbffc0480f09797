"""Reading a host's database from the side (SQLite file or PostgreSQL schema): what the
instances ended as, and which events were stored and consumed. The checks read the truth here,
not through the host under test."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from dynamic_workflows.core.codec import decode


@dataclass
class Row:
    """One instance as stored."""

    id: str
    status: str
    output: Any
    error: str | None
    events: list[tuple[str, bool]] = field(default_factory=list)
    """The tokens of its events, in the order stored, and whether each was consumed."""


def _token(payload: bytes) -> str:
    value = decode(payload)
    return str(value.get("token")) if isinstance(value, dict) else repr(value)


class SQLiteStore:
    """The state file of a ``dwf dev`` project (read while the host runs: WAL lets us)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    async def has_event(self, token: str) -> bool:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT payload FROM events WHERE CAST(payload AS TEXT) LIKE ?",
                (f"%{json.dumps(token)}%",),
            ).fetchall()
        finally:
            conn.close()
        return any(_token(p) == token for (p,) in rows)

    async def rows(self) -> dict[str, Row]:
        conn = self._connect()
        try:
            found = {
                iid: Row(iid, status, None if out is None else decode(out), err)
                for iid, status, out, err in conn.execute(
                    "SELECT id, status, output, error_message FROM instances"
                )
            }
            events = conn.execute(
                "SELECT i.id, e.payload, e.consumed FROM events e "
                "JOIN instances i ON i.pk = e.instance_pk ORDER BY e.seq"
            ).fetchall()
        finally:
            conn.close()
        for iid, payload, consumed in events:
            found[iid].events.append((_token(payload), bool(consumed)))
        return found

    async def statuses(self) -> dict[str, int]:
        conn = self._connect()
        try:
            return dict(conn.execute("SELECT status, count(*) FROM instances GROUP BY status"))
        finally:
            conn.close()


class PgStore:
    """A ``dwf serve`` deployment's schema on PostgreSQL (``url`` as the host got it)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.schema = query.pop("schema", "public")
        query.pop("lease_seconds", None)
        self.dsn = urlunsplit(parts._replace(query=urlencode(query)))

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.dsn, timeout=10, server_settings={"search_path": self.schema}
        )

    async def has_event(self, token: str) -> bool:
        conn = await self._connect()
        try:
            rows = await conn.fetch(
                "SELECT payload FROM events WHERE position($1::bytea in payload) > 0",
                json.dumps(token).encode(),
            )
        finally:
            await conn.close()
        return any(_token(r["payload"]) == token for r in rows)

    async def rows(self) -> dict[str, Row]:
        conn = await self._connect()
        try:
            instances = await conn.fetch("SELECT id, status, output, error_message FROM instances")
            events = await conn.fetch(
                "SELECT i.id, e.payload, e.consumed FROM events e "
                "JOIN instances i ON i.pk = e.instance_pk ORDER BY e.seq"
            )
        finally:
            await conn.close()
        found = {
            r["id"]: Row(
                r["id"],
                r["status"],
                None if r["output"] is None else decode(r["output"]),
                r["error_message"],
            )
            for r in instances
        }
        for r in events:
            found[r["id"]].events.append((_token(r["payload"]), bool(r["consumed"])))
        return found

    async def statuses(self) -> dict[str, int]:
        conn = await self._connect()
        try:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM instances GROUP BY status")
        finally:
            await conn.close()
        return {r["status"]: r["n"] for r in rows}

    async def kill_connections(self) -> int:
        """pg_terminate_backend every connection of the hosts to this database: how many."""
        conn = await self._connect()
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'dynamic-workflows'"
                )
            )
        finally:
            await conn.close()


Store = SQLiteStore | PgStore
