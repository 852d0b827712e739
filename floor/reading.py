"""Reading a file a session names: only regular files, never a FIFO or a device that would block the reader."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def open_regular(path: Path) -> int:
    """A read-only descriptor of a regular file; OSError (with a readable strerror) for anything else."""
    # O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever; fstat then tells what it is.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a plain file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(path: Path, *, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file; OSError (with a readable strerror) for anything else or a file too large."""
    fd = open_regular(path)
    try:
        info = os.fstat(fd)
        if max_bytes is not None and info.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes", str(path))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(-1 if max_bytes is None else max_bytes + 1)
    finally:
        os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:  # it grew after fstat
        raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes", str(path))
    return data
