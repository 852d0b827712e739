"""Opening a run's journal: the file must be the run's own, its log the run's own, its tables phasegate's."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from phasegate.floor.errors import JournalError
from phasegate.journal.sanitize import storable
from phasegate.journal.schema import SCHEMA_VERSION, damage, tables


@contextmanager
def creating(path: Path, conn: sqlite3.Connection | None = None) -> Iterator[None]:
    """While a journal is created: a failure (a full disk, say) closes it and says so as a JournalError."""
    try:
        yield
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise JournalError(f"{path}: cannot create the journal: {exc}") from None


# Every text bound to a statement is made storable: a lone surrogate (a non-UTF-8 argument such as an operator's
# note, or a file name) has no UTF-8 form, and binding it would raise instead of journaling. An adapter for `str`
# makes the sqlite3 module adapt even its base types (only journal/ uses sqlite3).
sqlite3.register_adapter(str, storable)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed state change survives power loss, not only a process crash.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def check_journal_file(path: Path) -> None:
    """Refuse a state.db that is not the run folder's own regular file (SQLite would follow a link to another
    run's journal and write there, or make an empty journal where none is)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise JournalError(f"{path}: no journal; `phasegate run SESSION` creates a run folder with one") from None
    except OSError as exc:
        raise JournalError(f"{path}: cannot read the journal: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise JournalError(f"{path}: the journal is a symbolic link (to {os.readlink(path)}); a run's journal is "
                           f"a file of its own folder. Resume the run it belongs to, or copy the file here")
    if not stat.S_ISREG(info.st_mode):
        raise JournalError(f"{path}: the journal is not a file; this is not a usable run folder")
    if info.st_size == 0:
        raise JournalError(f"{path}: the journal is empty (0 bytes): it was cut short or truncated. Completed "
                           f"artifacts are untouched; run `phasegate recover {path.parent}` to list them")


def _run_id(path: Path, mode: str) -> str | None:
    """The run id the journal holds, read `ro` (with its write-ahead log) or `immutable` (the database file
    alone); None when it cannot be told. Neither connection checkpoints the log into the file when it closes."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}=1" if mode == "immutable"
                               else f"{path.resolve().as_uri()}?mode={mode}", uri=True)
    except (sqlite3.Error, OSError, ValueError):
        return None
    try:
        row = conn.execute("SELECT run_id FROM run").fetchone()
    except sqlite3.Error:  # mid-checkpoint, damaged, or no run row yet: nothing to compare
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def check_wal_is_its_own(path: Path) -> None:
    """Refuse a write-ahead log of another run, before any connection could checkpoint it into the file: SQLite
    applies any valid log, so a state.db-wal copied from another run would silently stand for this run's history."""
    wal = path.with_name(path.name + "-wal")
    if not wal.is_file():
        return
    own, logged = _run_id(path, "immutable"), _run_id(path, "ro")
    if own is not None and logged is not None and own != logged:
        raise JournalError(f"{wal}: this write-ahead log belongs to run {logged!r}, the journal {path} to run "
                           f"{own!r}: it was copied in from another run. Put back this run's own {wal.name} (or "
                           f"remove it, losing only its commits not yet in {path.name}), then resume; "
                           f"`phasegate recover {path.parent}` lists what can be kept")


def open_connection(path: Path) -> sqlite3.Connection:
    """A connection to an existing journal, once it is known intact, of this schema version and the run's own."""
    check_journal_file(path)
    check_wal_is_its_own(path)
    try:
        conn = connect(path)
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        problem = None if ok != "ok" or version != SCHEMA_VERSION else damage(conn)
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: the journal is unreadable ({exc}); it may be corrupt or truncated. "
                           f"Completed artifacts under {path.parent / 'artifacts'} are untouched; "
                           f"run `phasegate recover {path.parent}` to list them") from None
    if ok != "ok":
        conn.close()
        raise JournalError(f"{path}: the journal failed its integrity check ({ok}). Completed artifacts "
                           f"are untouched; run `phasegate recover {path.parent}` to list them")
    if version == 0 and not tables(conn):
        conn.close()
        raise JournalError(f"{path}: the journal is empty (no tables): it was cut short or truncated. "
                           f"Completed artifacts are untouched; run `phasegate recover {path.parent}` to "
                           f"list them")
    if version != SCHEMA_VERSION:
        conn.close()
        raise JournalError(f"{path}: journal schema version {version}, this phasegate reads version "
                           f"{SCHEMA_VERSION}; use the phasegate release that created this run")
    if problem is not None:
        conn.close()
        raise JournalError(f"{path}: the journal is damaged ({problem}); it was edited or broken outside "
                           f"phasegate. Completed artifacts are untouched; run `phasegate recover "
                           f"{path.parent}` to list them")
    return conn
