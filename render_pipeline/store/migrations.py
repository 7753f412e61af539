"""Numbered SQL migrations (`sql/migrations/NNN_name.sql` + `NNN_name.rollback.sql`).

Each file runs in its own transaction together with its `schema_migrations` row, statement
by statement, so a failure rolls the whole file back and names the statement that failed.
An advisory lock keeps two upgraders from racing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from render_pipeline.package_data import SQL_DIR

MIGRATIONS_DIR = SQL_DIR / "migrations"
SEED_FILES = ("seed_styles.sql", "seed_size_presets.sql")
_LOCK_ID = 0x52454E44  # arbitrary constant: "REND"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration or seed failed; nothing of that file was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    rollback_path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: str | None
    checksum_matches: bool | None


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migrations in version order; each must have its rollback file."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        if path.name.endswith(".rollback.sql"):
            continue
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        rollback = path.with_name(path.name[: -len(".sql")] + ".rollback.sql")
        if not rollback.exists():
            raise MigrationError(f"{path.name}: missing rollback file {rollback.name}")
        migrations.append(Migration(int(match.group(1)), match.group(2), path, rollback))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


def split_statements(script: str) -> list[str]:
    """Split SQL on top-level semicolons, respecting quotes, dollar quotes and comments."""
    statements, current, i, n = [], [], 0, len(script)
    while i < n:
        ch = script[i]
        if script.startswith("--", i):
            end = script.find("\n", i)
            end = n if end == -1 else end
            current.append(script[i:end])
            i = end
        elif script.startswith("/*", i):
            end = script.find("*/", i + 2)
            end = n if end == -1 else end + 2
            current.append(script[i:end])
            i = end
        elif ch in ("'", '"'):
            end = i + 1
            while end < n:
                if script[end] == ch:
                    if end + 1 < n and script[end + 1] == ch:  # doubled quote escapes itself
                        end += 2
                        continue
                    break
                end += 1
            current.append(script[i : end + 1])
            i = end + 1
        elif ch == "$" and (tag := re.match(r"\$[A-Za-z_]*\$", script[i:])):
            end = script.find(tag.group(0), i + len(tag.group(0)))
            end = n if end == -1 else end + len(tag.group(0))
            current.append(script[i:end])
            i = end
        elif ch == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", statement, flags=re.S)
    return bool(without_comments.strip())


def _run_script(conn: psycopg.Connection, path: Path) -> None:
    for number, statement in enumerate(split_statements(path.read_text(encoding="utf-8")), start=1):
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            first_line = statement.splitlines()[0][:120]
            detail = (exc.diag.message_primary or str(exc)).strip()
            raise MigrationError(f"{path.name}: statement {number} ({first_line!r}) failed: {detail}") from None


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    """Applied version → checksum (empty before the first upgrade)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS present").fetchone()
    if not _value(exists):
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY version").fetchall()
    return {_row(r)[0]: _row(r)[1] for r in rows}


def upgrade(conn: psycopg.Connection, *, to: int | None = None, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations up to ``to`` (default: all); returns what was applied."""
    applied: list[Migration] = []
    for migration in discover(directory):
        if to is not None and migration.version > to:
            break
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            _ensure_table(conn)
            if migration.version in applied_versions(conn):
                continue
            _run_script(conn, migration.path)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        applied.append(migration)
    return applied


def downgrade(conn: psycopg.Connection, *, to: int, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Roll back applied migrations above version ``to``, newest first."""
    if to < 0:
        raise MigrationError("--to must be 0 or a migration version")
    rolled_back: list[Migration] = []
    for migration in reversed(discover(directory)):
        if migration.version <= to:
            break
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            if migration.version not in applied_versions(conn):
                continue
            _run_script(conn, migration.rollback_path)
            conn.execute("DELETE FROM schema_migrations WHERE version = %s", (migration.version,))
        rolled_back.append(migration)
    return rolled_back


def status(conn: psycopg.Connection, *, directory: Path = MIGRATIONS_DIR) -> list[MigrationStatus]:
    applied = applied_versions(conn)
    times: dict[int, str] = {}
    if applied:
        rows = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
        times = {_row(r)[0]: _row(r)[1].isoformat(timespec="seconds") for r in rows}
    return [
        MigrationStatus(
            version=m.version,
            name=m.name,
            applied_at=times.get(m.version),
            checksum_matches=(applied[m.version] == m.checksum) if m.version in applied else None,
        )
        for m in discover(directory)
    ]


def current_version(conn: psycopg.Connection) -> int:
    return max(applied_versions(conn), default=0)


def latest_version(directory: Path = MIGRATIONS_DIR) -> int:
    return max((m.version for m in discover(directory)), default=0)


def seed(conn: psycopg.Connection, *, directory: Path = SQL_DIR) -> list[str]:
    """Load the style and preset catalogues (idempotent upserts), each file in one transaction."""
    loaded = []
    for name in SEED_FILES:
        with conn.transaction():
            _run_script(conn, directory / name)
        loaded.append(name)
    return loaded


def _row(row) -> tuple:
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def _value(row) -> object:
    return _row(row)[0] if row is not None else None
