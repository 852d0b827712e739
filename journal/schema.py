"""The journal's tables, and what makes a journal that SQLite calls intact unusable to phasegate."""

from __future__ import annotations

import sqlite3
from functools import cache

from phasegate.floor.states import AttemptState, GateStatus, PhaseState, SessionState

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE run (
    id INTEGER PRIMARY KEY CHECK (id = 1), run_id TEXT NOT NULL, name TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    spec_sha256 TEXT NOT NULL, session_dir TEXT NOT NULL, spec_path TEXT NOT NULL);
CREATE TABLE phases (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    started_at REAL, ended_at REAL, progress_done INTEGER, progress_total INTEGER,
    progress_step TEXT, last_activity REAL, error TEXT);
CREATE TABLE attempts (
    phase TEXT NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL, input_hash TEXT,
    pid INTEGER, pid_start TEXT, started_at REAL NOT NULL, ended_at REAL, exit_code INTEGER,
    reason TEXT, PRIMARY KEY (phase, attempt));
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, type TEXT NOT NULL,
    phase TEXT, data TEXT NOT NULL);
CREATE TABLE metrics (
    phase TEXT NOT NULL, name TEXT NOT NULL, value REAL, ts REAL NOT NULL,
    PRIMARY KEY (phase, name));
CREATE TABLE artifacts (
    phase TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    ts REAL NOT NULL, PRIMARY KEY (phase, path));
CREATE TABLE gates (
    gate_id TEXT NOT NULL, phase TEXT NOT NULL, attempt INTEGER NOT NULL, stage TEXT NOT NULL,
    kind TEXT NOT NULL, status TEXT NOT NULL, summary TEXT NOT NULL, evidence TEXT NOT NULL,
    metrics TEXT NOT NULL, decided_at REAL NOT NULL, PRIMARY KEY (phase, gate_id, attempt));
CREATE TABLE operator_actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, gate_id TEXT NOT NULL, action TEXT NOT NULL,
    note TEXT NOT NULL, ts REAL NOT NULL, phase TEXT);
CREATE TABLE reviews (
    phase TEXT NOT NULL, gate_id TEXT NOT NULL, attempt INTEGER NOT NULL, asked_at REAL NOT NULL,
    answered_at REAL, answer TEXT, audit TEXT, PRIMARY KEY (phase, gate_id, attempt));
CREATE TABLE gpu_samples (
    ts REAL NOT NULL, phase TEXT, gpu INTEGER NOT NULL, available INTEGER NOT NULL, reason TEXT,
    name TEXT, mem_used_mb REAL, mem_total_mb REAL, util_pct REAL, temp_c REAL, power_w REAL,
    proc_mem_mb REAL);
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL, phase TEXT,
    seconds REAL, amount_usd REAL NOT NULL, note TEXT NOT NULL);
CREATE TABLE param_overrides (
    phase TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, gate_id TEXT NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (phase, key));
CREATE TABLE commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    args TEXT NOT NULL, handled_at REAL, result TEXT);
"""


@cache
def expected_tables() -> dict[str, tuple[str, ...]]:
    """Each table of SCHEMA with its columns, as SQLite itself reads the schema."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        return tables(conn)
    finally:
        conn.close()


def tables(conn: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                            " AND name NOT LIKE 'sqlite_%'")]
    return {name: tuple(row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (name,)))
            for name in names}


# The columns readers turn into state enums, with the values they may hold.
STATE_COLUMNS = (("run", "state", SessionState), ("phases", "state", PhaseState),
                  ("attempts", "state", AttemptState), ("gates", "status", GateStatus))


def damage(conn: sqlite3.Connection) -> str | None:
    """What makes a journal that passed SQLite's own check unusable: a table gone, a state nobody writes."""
    found = tables(conn)
    for table, columns in expected_tables().items():
        missing = sorted(set(columns) - set(found.get(table, ())))
        if table not in found:
            return f"table {table!r} is missing"
        if missing:
            return f"table {table!r} lacks column(s) {', '.join(missing)}"
    for table, column, states in STATE_COLUMNS:
        marks = ", ".join("?" * len(states))
        row = conn.execute(f"SELECT {column} FROM {table} WHERE {column} NOT IN ({marks}) LIMIT 1",
                           tuple(str(s) for s in states)).fetchone()
        if row is not None:
            return f"table {table!r} holds the {column} {row[0]!r}, which phasegate never writes"
    return None
