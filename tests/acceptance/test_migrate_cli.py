"""``dwf migrate --db URL`` as a user runs it: a subprocess, on PostgreSQL and on SQLite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pg_support
from dynamic_workflows.storage.postgres_schema import migrations

DWF = [sys.executable, "-m", "dynamic_workflows.cli"]


def dwf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DWF, *args], capture_output=True, text=True, timeout=60, check=False)


def test_migrate_a_postgres_schema_then_find_it_up_to_date(
    pg_server: pg_support.PgServer,
) -> None:
    schema = pg_server.new_schema_name()
    url = pg_server.schema_url(schema)
    try:
        first = dwf("migrate", "--db", url)
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines() == [
            "applied 0001_init",
            "applied 0002_nodes",
            "applied 0003_step_attempts",
            "applied 0004_logs",
            "applied 0005_rollbacks",
            "applied 0006_step_sensitive",
            "applied 0007_tenants",
            "applied 0008_schedules_retention",
            "applied 0009_tenant_next_wake",
            "schema now at version 9",
        ]
        again = dwf("migrate", "--db", url)
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines() == ["schema already at version 9"]
    finally:
        pg_server.drop(schema)


def test_migrate_a_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    first = dwf("migrate", "--db", f"sqlite://{db}")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "applied 0001_init"
    assert lines[-1].startswith("schema now at version ")
    again = dwf("migrate", "--db", str(db))
    assert again.stdout.splitlines() == [lines[-1].replace("now", "already")]


def test_migrate_without_a_server_is_a_clear_error() -> None:
    proc = dwf("migrate", "--db", "postgresql://nobody:hunter2@127.0.0.1:1/nothing")
    assert proc.returncode == 1
    assert "cannot connect to PostgreSQL" in proc.stderr
    assert "hunter2" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_migrate_reads_the_url_as_the_engine_does(pg_server: pg_support.PgServer) -> None:
    schema = pg_server.new_schema_name()
    try:
        proc = dwf("migrate", "--db", pg_server.schema_url(schema) + "&lease_seconds=12")
        assert proc.returncode == 0, proc.stderr
        latest = migrations()[-1].version
        assert proc.stdout.splitlines()[-1] == f"schema now at version {latest}"
    finally:
        pg_server.drop(schema)
