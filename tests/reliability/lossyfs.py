"""A FUSE passthrough that keeps file data in memory until fsync, so a test can cut the power (LazyFS's semantics).

Run it as `python tests/reliability/lossyfs.py BACKING MOUNTPOINT` (it stays in the foreground), or through
`LossyMount`, whose `power_loss()` is a crash of the whole machine followed by a reboot.

What it promises, as LazyFS does:
- Metadata goes to the backing folder at once (create, mkdir, rename, link, symlink, unlink, rmdir,
  chmod, chown, utimens): after a power loss a created or renamed file is there, with whatever data of
  it had been synced.
- File data (write, truncate, a size change) stays in an in-memory page cache of the daemon until that
  file is fsync'ed or fdatasync'ed (msync of a shared mapping arrives as an fsync too). Reads see the
  cache over the backing data. The cache is keyed by the backing inode, so it follows a file through a
  rename, is shared by hard links, and is dropped when the file's last name goes.
- Nothing else ever writes cached data to the backing folder: not close, not a clean unmount. Killing
  the daemon (SIGKILL) therefore loses exactly the unsynced data, as a power cut loses the page cache.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PAGE = 4096
NO_FLOOR = 1 << 62
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
MNT_DETACH = 2


@dataclass
class Unsynced:
    """A file's data since its last fsync: its size and the pages that differ from the backing file."""

    size: int
    floor: int = NO_FLOOR  # backing bytes at or past this offset were truncated away: they read as zeros
    pages: dict[int, bytearray] = field(default_factory=dict)


class LossyFS:
    """The mfusepy operations: metadata passes through, data waits in `unsynced` until fsync."""

    use_ns = True

    def __init__(self, backing: str) -> None:
        self.root = os.path.realpath(backing)
        self.unsynced: dict[tuple[int, int], Unsynced] = {}
        self.handles: dict[int, tuple[int, int]] = {}  # backing fd (our file handle) -> backing inode key
        self.open_count: Counter[tuple[int, int]] = Counter()
        self.orphans: set[tuple[int, int]] = set()  # unlinked while open: dropped at the last release
        self.ready_fd: int | None = None

    # -- helpers -----------------------------------------------------------------------------
    def _path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def _entry(self, fd: int) -> Unsynced:
        key = self.handles[fd]
        entry = self.unsynced.get(key)
        if entry is None:
            entry = self.unsynced[key] = Unsynced(size=os.fstat(fd).st_size)
        return entry

    def _backing_page(self, fd: int, entry: Unsynced, index: int) -> bytes:
        """A page as the backing file holds it, zero past its end or its truncation floor."""
        offset = index * PAGE
        keep = max(0, min(PAGE, entry.floor - offset))
        return os.pread(fd, keep, offset).ljust(PAGE, b"\0") if keep else bytes(PAGE)

    def _forget(self, key: tuple[int, int]) -> None:
        """A file's last name is gone: its unsynced data goes too (at once, or when the last handle closes)."""
        if self.open_count[key]:
            self.orphans.add(key)
        else:
            self.unsynced.pop(key, None)

    def _truncate(self, fd: int, length: int) -> None:
        entry = self._entry(fd)
        entry.pages = {i: p for i, p in entry.pages.items() if i * PAGE < length}
        index, start = divmod(length, PAGE)
        if start and index in entry.pages:
            entry.pages[index][start:] = bytes(PAGE - start)
        entry.floor = min(entry.floor, length)
        entry.size = length

    def _register(self, fd: int) -> int:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        self.handles[fd] = key
        self.open_count[key] += 1
        return fd

    def _open_backing(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open read-write when allowed (an fsync may have to write what another handle cached)."""
        passed = flags & ~(os.O_ACCMODE | os.O_TRUNC | os.O_APPEND | os.O_SYNC | os.O_DSYNC | os.O_DIRECT)
        try:
            return os.open(path, passed | os.O_RDWR, mode)
        except OSError:
            return os.open(path, passed | (flags & os.O_ACCMODE), mode)

    # -- data --------------------------------------------------------------------------------
    def create(self, path: str, mode: int, flags: int) -> int:
        fd = self._register(self._open_backing(self._path(path), flags | os.O_CREAT, mode))
        if flags & os.O_TRUNC:
            self._truncate(fd, 0)
        return fd

    def open(self, path: str, flags: int) -> int:
        fd = self._register(self._open_backing(self._path(path), flags))
        if flags & os.O_TRUNC:
            self._truncate(fd, 0)
        return fd

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        entry = self.unsynced.get(self.handles[fh])
        if entry is None:
            return os.pread(fh, size, offset)
        out = bytearray()
        position, end = offset, min(offset + size, entry.size)
        while position < end:
            index, start = divmod(position, PAGE)
            count = min(PAGE - start, end - position)
            page = entry.pages.get(index) or self._backing_page(fh, entry, index)
            out += page[start:start + count]
            position += count
        return bytes(out)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        entry = self._entry(fh)
        position, end = offset, offset + len(data)
        while position < end:
            index, start = divmod(position, PAGE)
            count = min(PAGE - start, end - position)
            page = entry.pages.get(index)
            if page is None:
                page = entry.pages[index] = bytearray(self._backing_page(fh, entry, index))
            page[start:start + count] = data[position - offset:position - offset + count]
            position += count
        entry.size = max(entry.size, end)
        return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        if fh is not None:
            self._truncate(fh, length)
            return
        fd = self._register(self._open_backing(self._path(self._need(path)), os.O_RDONLY))
        try:
            self._truncate(fd, length)
        finally:
            self.release(path, fd)

    def fsync(self, path: str | None, datasync: int, fh: int) -> None:
        """Write this file's cached pages and size to the backing file and make them durable there."""
        key = self.handles[fh]
        entry = self.unsynced.get(key)
        if entry is not None:
            fd = fh if _writable(fh) else os.open(f"/proc/self/fd/{fh}", os.O_WRONLY)
            try:
                if entry.floor < os.fstat(fd).st_size:
                    os.ftruncate(fd, entry.floor)
                for index, page in sorted(entry.pages.items()):
                    count = min(PAGE, entry.size - index * PAGE)
                    if count > 0:
                        os.pwrite(fd, page[:count], index * PAGE)
                os.ftruncate(fd, entry.size)
                os.fsync(fd)
            finally:
                if fd != fh:
                    os.close(fd)
            del self.unsynced[key]
        os.fsync(fh)

    def flush(self, path: str | None, fh: int) -> None:
        return None  # close(2) makes nothing durable

    def release(self, path: str | None, fh: int) -> None:
        key = self.handles.pop(fh)
        os.close(fh)
        self.open_count[key] -= 1
        if not self.open_count[key]:
            del self.open_count[key]
            if key in self.orphans:
                self.orphans.discard(key)
                self.unsynced.pop(key, None)

    def getattr(self, path: str | None, fh: int | None = None) -> dict:
        st = os.fstat(fh) if fh is not None else os.lstat(self._path(self._need(path)))
        attrs = {name: getattr(st, name) for name in (
            "st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size", "st_blksize", "st_blocks")}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        entry = self.unsynced.get((st.st_dev, st.st_ino))
        if entry is not None:
            attrs["st_size"] = entry.size
            attrs["st_blocks"] = (entry.size + 511) // 512
        return attrs

    # -- metadata: straight to the backing folder ----------------------------------------------
    def _need(self, path: str | None) -> str:
        if path is None:
            raise OSError(errno.ENOENT, "no path")
        return path

    def unlink(self, path: str) -> None:
        st = os.lstat(self._path(path))
        os.unlink(self._path(path))
        if st.st_nlink <= 1:
            self._forget((st.st_dev, st.st_ino))

    def rename(self, old: str, new: str) -> None:
        try:
            replaced = os.lstat(self._path(new))
        except FileNotFoundError:
            replaced = None
        moved = os.lstat(self._path(old))
        os.rename(self._path(old), self._path(new))
        if replaced is not None and replaced.st_nlink <= 1 and replaced.st_ino != moved.st_ino:
            self._forget((replaced.st_dev, replaced.st_ino))

    def link(self, target: str, source: str) -> None:
        os.link(self._path(source), self._path(target))

    def symlink(self, target: str, source: str) -> None:
        os.symlink(source, self._path(target))

    def readlink(self, path: str) -> str:
        return os.readlink(self._path(path))

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._path(path), mode)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._path(path))

    def mknod(self, path: str, mode: int, dev: int) -> None:
        os.mknod(self._path(path), mode, dev)

    def chmod(self, path: str | None, mode: int) -> None:
        os.chmod(self._path(self._need(path)), mode)

    def chown(self, path: str | None, uid: int, gid: int) -> None:
        os.chown(self._path(self._need(path)), uid, gid, follow_symlinks=False)

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> None:
        target = self._path(self._need(path))
        if times is None:
            os.utime(target, follow_symlinks=False)
            return
        st, now = os.lstat(target), time.time_ns()
        old = (st.st_atime_ns, st.st_mtime_ns)
        ns = tuple(now if t == UTIME_NOW else old[i] if t == UTIME_OMIT else t for i, t in enumerate(times))
        os.utime(target, ns=ns, follow_symlinks=False)

    def access(self, path: str, amode: int) -> None:
        if not os.access(self._path(path), amode, follow_symlinks=False):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    def readdir(self, path: str | None, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._path(self._need(path)))]

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> None:
        fd = os.open(self._path(self._need(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def statfs(self, path: str) -> dict:
        st = os.statvfs(self._path(path))
        return {name: getattr(st, name) for name in (
            "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
            "f_flag", "f_namemax")}

    def init_with_config(self, conn, config) -> None:
        """The kernel has the mount: tell whoever started us (a line on --ready-fd)."""
        if self.ready_fd is not None:
            os.write(self.ready_fd, b"ready\n")
            os.close(self.ready_fd)
            self.ready_fd = None


def _writable(fd: int) -> bool:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY


# -- running it from tests -------------------------------------------------------------------
REQUIRE_ENV = "PHASEGATE_REQUIRE_FUSE"  # set in CI where FUSE must work: then a missing FUSE fails, not skips
CANNOT_MOUNT = ("/dev/fuse", "fusermount", "Operation not permitted", "Permission denied", "mount failed")


class MountFailed(RuntimeError):
    """The daemon did not mount; the message holds its output."""


def fuse_unavailable() -> str | None:
    """Why FUSE cannot be used here (no device, no permission, no binding or library); None when it can."""
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return f"/dev/fuse cannot be opened ({exc.strerror})"
    try:
        import mfusepy  # noqa: F401  (loads libfuse through ctypes: fails without the shared library)
    except (ImportError, OSError) as exc:
        return f"the mfusepy binding or the libfuse library is missing ({exc})"
    return None


class LossyMount:
    """lossyfs.py as a separate process over a backing folder; power_loss() is a machine crash and reboot."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path) -> None:
        self.backing, self.mountpoint, self.log = Path(backing), Path(mountpoint), Path(log)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Mount, and return once the kernel has answered the daemon's first request."""
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        read_end, write_end = os.pipe()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, __file__, str(self.backing), str(self.mountpoint), "--ready-fd", str(write_end)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_end,))
        os.close(write_end)
        try:
            ready, _, _ = select.select([read_end], [], [], timeout)
            line = os.read(read_end, 64) if ready else b""
        finally:
            os.close(read_end)
        if line != b"ready\n":
            self.process.kill()
            self.process.wait()
            self._detach()
            tail = self.log.read_text(errors="replace")[-2000:]
            raise MountFailed(f"lossyfs did not mount {self.mountpoint}: {tail.strip() or 'no output'}")

    def power_loss(self) -> None:
        """Kill every process using the mount and the daemon (its unsynced pages die with it), then remount."""
        self.crash()
        self.start()

    def crash(self) -> None:
        """The power goes: every user of the mount and the daemon die at once; the dead mount is detached."""
        kill_users(self.mountpoint)
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        self._detach()

    def stop(self) -> None:
        """Unmount cleanly (this too persists no unsynced data)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        self._detach()

    def _detach(self) -> None:
        if not is_mounted(self.mountpoint):
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.umount2(str(self.mountpoint).encode(), MNT_DETACH) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"umount2 {self.mountpoint}: {os.strerror(code)}")


@contextmanager
def mounted(base: Path) -> Iterator[LossyMount]:
    """A started LossyMount in `base`; skips the test where this machine cannot mount FUSE."""
    import pytest

    mount = LossyMount(base / "backing", base / "mnt", base / "lossyfs.log")
    reason = fuse_unavailable()
    if reason is None:
        try:
            mount.start()
        except MountFailed as exc:
            if not any(sign in str(exc) for sign in CANNOT_MOUNT):
                raise  # our daemon is broken: that is a failure, not a reason to skip
            reason = str(exc)
    if reason is not None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but FUSE cannot be used here: {reason}")
        pytest.skip(f"FUSE cannot be used here: {reason}")
    try:
        yield mount
    finally:
        mount.stop()
    crashes = [line for line in mount.log.read_text(errors="replace").splitlines() if "Uncaught" in line]
    assert not crashes, f"lossyfs raised unexpected errors (see {mount.log}): {crashes[:3]}"


def is_mounted(mountpoint: Path) -> bool:
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


def kill_users(mountpoint: Path) -> list[int]:
    """SIGKILL every other process with a file, a mapping or its working folder on the mount; wait for them."""
    root = os.path.realpath(mountpoint)
    victims = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and int(pid) != os.getpid()
               and _uses(pid, root)]
    handles = []
    for pid in victims:
        try:
            handles.append(os.pidfd_open(pid))  # a pidfd: no mistaking a reused pid, readable once it is dead
        except ProcessLookupError:
            continue
        signal.pidfd_send_signal(handles[-1], signal.SIGKILL)
    for handle in handles:
        select.select([handle], [], [], 10)
        os.close(handle)
    return victims


def _uses(pid: str, root: str) -> bool:
    try:
        links = [os.readlink(f"/proc/{pid}/{name}") for name in ("cwd", "root")]
        links += [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        with open(f"/proc/{pid}/maps") as maps:
            links += [line.split(None, 5)[-1].strip() for line in maps if "/" in line]
    except OSError:  # it ended meanwhile, or it is not ours to see
        return False
    links = [link.removesuffix(" (deleted)") for link in links]
    return any(link == root or link.startswith(root + "/") for link in links)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backing")
    parser.add_argument("mountpoint")
    parser.add_argument("--ready-fd", type=int, help="write 'ready' to this fd once mounted")
    parser.add_argument("--debug", action="store_true", help="libfuse's request trace on stderr")
    args = parser.parse_args(argv)
    import logging

    import mfusepy

    logging.basicConfig(level=logging.WARNING, format="lossyfs %(levelname)s %(message)s")

    operations = LossyFS(args.backing)
    operations.ready_fd = args.ready_fd

    class Fuse(mfusepy.FUSE):
        def truncate_fuse_3(self, path, length, fip):
            """ftruncate(2) under libfuse 3 comes with its file handle, which mfusepy would drop."""
            name = None if path is None else path.decode(self.encoding, self.errors)
            return self.operations.truncate(name, length, fip.contents.fh if fip else None)

    # single-threaded: the cache needs no lock; direct_io stays off so SQLite can mmap its -shm file;
    # hard_remove: an unlinked open file is really unlinked, not renamed to .fuse_hidden* until closed
    try:
        Fuse(operations, args.mountpoint, foreground=True, nothreads=True, debug=args.debug,
             fsname="lossyfs", subtype="lossyfs", hard_remove=True)
    except RuntimeError as exc:
        if str(exc) != "8":  # libfuse's code for "ended by a signal": our stop() sends SIGTERM
            raise


if __name__ == "__main__":
    main()
