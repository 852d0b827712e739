"""The lossy filesystem keeps what was fsync'ed and loses the rest at a power loss, as LazyFS does."""

from __future__ import annotations

import mmap
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability import lossyfs


@pytest.fixture
def lossy(tmp_path):
    with lossyfs.mounted(tmp_path) as mount:
        yield mount


def put(path: Path, data: bytes, *, sync: bool) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        if sync:
            os.fsync(handle.fileno())


def test_unsynced_data_is_lost_but_the_file_is_there(lossy):
    new, old = lossy.mountpoint / "new.txt", lossy.mountpoint / "old.txt"
    put(old, b"durable", sync=True)
    put(new, b"volatile", sync=False)
    with open(old, "ab") as handle:
        handle.write(b" and more")
    assert new.read_bytes() == b"volatile" and old.read_bytes() == b"durable and more"  # reads see the cache
    assert (lossy.backing / "new.txt").read_bytes() == b""  # nothing reached the backing file yet
    lossy.power_loss()
    assert new.exists() and new.read_bytes() == b""  # the create was metadata: it stays; its data went
    assert old.read_bytes() == b"durable"


def test_fsync_and_fdatasync_keep_data(lossy):
    a, b = lossy.mountpoint / "a", lossy.mountpoint / "b"
    put(a, b"A" * 10_000, sync=True)
    with open(b, "wb") as handle:
        handle.write(b"B" * 5000)
        handle.flush()
        os.fdatasync(handle.fileno())
        handle.write(b"lost")  # after the last sync
    lossy.power_loss()
    assert a.read_bytes() == b"A" * 10_000 and b.read_bytes() == b"B" * 5000


def test_rename_carries_unsynced_data_and_keeps_synced_data(lossy):
    root = lossy.mountpoint
    put(root / "tmp1", b"new, synced", sync=True)
    os.replace(root / "tmp1", root / "atomic.txt")  # temp + fsync + rename: the safe way
    put(root / "tmp2", b"new, not synced", sync=False)
    os.replace(root / "tmp2", root / "careless.txt")
    assert (root / "careless.txt").read_bytes() == b"new, not synced"  # the cache followed the rename
    lossy.power_loss()
    assert (root / "atomic.txt").read_bytes() == b"new, synced"
    assert (root / "careless.txt").read_bytes() == b""  # the classic zero-length file after a crash
    assert not (root / "tmp1").exists() and not (root / "tmp2").exists()


def test_unlink_drops_the_cache_and_mkdir_rmdir_pass_through(lossy):
    root = lossy.mountpoint
    (root / "dir").mkdir()
    put(root / "dir" / "f", b"x" * 9000, sync=False)
    (root / "dir" / "f").unlink()
    put(root / "dir" / "f", b"", sync=False)  # a new file, maybe on the freed inode: none of the old data
    assert (root / "dir" / "f").read_bytes() == b""
    (root / "gone").mkdir()
    (root / "gone").rmdir()
    lossy.power_loss()
    assert sorted(p.name for p in root.iterdir()) == ["dir"] and (root / "dir" / "f").exists()


def test_truncate_is_data_until_synced(lossy):
    path = lossy.mountpoint / "t"
    put(path, bytes(range(256)) * 40, sync=True)
    with open(path, "r+b") as handle:
        handle.truncate(100)
        handle.seek(5000)
        handle.write(b"end")  # the hole between 100 and 5000 reads as zeros, not the old bytes
    assert path.read_bytes() == bytes(range(100)) + bytes(4900) + b"end"
    lossy.power_loss()
    assert path.read_bytes() == bytes(range(256)) * 40


def test_random_writes_match_a_model_of_current_and_durable_content(lossy):
    """pwrite, truncate and fsync at random: reads show the current bytes, a power loss leaves the synced ones."""
    rng = random.Random(7)
    path = lossy.mountpoint / "model.bin"
    current = durable = b""
    put(path, b"", sync=True)
    for _ in range(4):
        fd = os.open(path, os.O_RDWR)
        try:
            for _ in range(80):
                roll = rng.random()
                if roll < 0.6:
                    offset, data = rng.randrange(0, 20_000), rng.randbytes(rng.randrange(1, 9000))
                    os.pwrite(fd, data, offset)
                    current = current.ljust(offset, b"\0")
                    current = current[:offset] + data + current[offset + len(data):]
                elif roll < 0.8:
                    size = rng.randrange(0, 24_000)
                    os.ftruncate(fd, size)
                    current = current[:size].ljust(size, b"\0")
                elif roll < 0.9:
                    os.fsync(fd)
                    durable = current
                offset = rng.randrange(0, 24_000)
                assert os.pread(fd, 5000, offset) == current[offset:offset + 5000]
            assert os.fstat(fd).st_size == len(current)
        finally:
            os.close(fd)
        lossy.power_loss()
        current = durable
        assert path.read_bytes() == durable


def test_shared_mapping_is_kept_only_when_msynced(lossy):
    root = lossy.mountpoint
    for name in ("synced", "unsynced"):
        put(root / name, bytes(2 * mmap.PAGESIZE), sync=True)
        with open(root / name, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as mapped:
            mapped[100:105] = b"hello"
            if name == "synced":
                mapped.flush()  # msync(MS_SYNC): written back, then fsync'ed
    lossy.power_loss()
    assert (root / "synced").read_bytes()[100:105] == b"hello"
    assert (root / "unsynced").read_bytes()[100:105] == bytes(5)

WRITER = r'''
import random, sqlite3, sys
path, synchronous, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
conn = sqlite3.connect(path, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute(f"PRAGMA synchronous={synchronous}")
conn.execute("PRAGMA wal_autocheckpoint=100")  # a few checkpoints (and WAL restarts) during the test
conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload BLOB)")
first = conn.execute("SELECT COALESCE(MAX(id), 0) FROM t").fetchone()[0] + 1
for n in range(first, first + 100_000):
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES (?, ?)", (n, rng.randbytes(rng.randrange(10, 3000))))
    conn.execute("COMMIT")
    print(n, flush=True)  # acknowledged: the commit returned
'''


def start_writer(db: Path, synchronous: str, seed: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db), synchronous, str(seed)],
                            stdout=subprocess.PIPE, text=True)


def ids_after_recovery(db: Path) -> tuple[set[int], str]:
    conn = sqlite3.connect(db)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        try:
            ids = {row[0] for row in conn.execute("SELECT id FROM t")}
        except sqlite3.OperationalError:  # the table itself was never made durable
            ids = set()
    finally:
        conn.close()
    return ids, check


def crash_writer_after(lossy, writer: subprocess.Popen, acks: int) -> set[int]:
    """Let the writer acknowledge `acks` commits, cut the power while it goes on, return what it acknowledged."""
    acked = {int(writer.stdout.readline()) for _ in range(acks)}
    lossy.power_loss()  # kills the writer mid-transaction, then the daemon
    acked |= {int(line) for line in writer.stdout.read().split()}  # printed before it died
    writer.wait()
    return acked


def test_sqlite_wal_full_keeps_every_acknowledged_commit(lossy):
    db = lossy.mountpoint / "full.db"
    acked: set[int] = set()
    rng = random.Random(11)
    for round_ in range(4):
        writer = start_writer(db, "FULL", round_)
        acked |= crash_writer_after(lossy, writer, rng.randrange(20, 200))
        ids, check = ids_after_recovery(db)
        assert check == "ok"
        assert acked <= ids, f"lost acknowledged commits: {sorted(acked - ids)[:10]}"
        assert ids - acked <= {max(acked) + 1}  # at most the one in flight committed unacknowledged
        acked = ids


def test_sqlite_wal_synchronous_off_loses_commits(lossy):
    """The control: without fsync the filesystem really drops committed data."""
    db = lossy.mountpoint / "off.db"
    acked = crash_writer_after(lossy, start_writer(db, "OFF", 1), 150)
    ids, check = ids_after_recovery(db)
    assert check == "ok"
    assert len(ids) < len(acked)


def test_sqlite_readers_in_other_processes_see_each_commit(lossy):
    """The -shm file is mmapped by every connection: a reader must see each acknowledged commit at once."""
    db = lossy.mountpoint / "shared.db"
    writer = start_writer(db, "FULL", 3)
    try:
        first = int(writer.stdout.readline())
        reader = sqlite3.connect(db)
        try:
            for _ in range(150):
                acked = int(writer.stdout.readline())
                assert reader.execute("SELECT MAX(id) FROM t").fetchone()[0] >= acked
        finally:
            reader.close()
    finally:
        writer.kill()
        writer.wait()
    assert acked > first
