"""The sentinel of one process tree: it waits on a pipe from the tree's owner and ends the tree when the pipe
closes, whether the owner closed it or died (kill -9 included). Run as `python -m phasegate.floor.sentinel TAG`."""

from __future__ import annotations

import signal
import sys
from typing import Any

from phasegate.floor.processes import Tree, end_tree


class _Woken(Exception):
    """A signal asked the sentinel to act now."""


def _wake(_signum: int, _frame: Any) -> None:
    raise _Woken


def main(argv: list[str]) -> int:
    """Read the tree's group ("<pgid> <leader start time>") from stdin; at end of file, end the tree."""
    tag, pgid, leader_start = argv[0], None, None
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _wake)
    try:
        for line in sys.stdin.buffer:  # blocks until the owner writes, closes, or dies
            pid, _, start = line.decode().strip().partition(" ")
            pgid, leader_start = int(pid), start or None
    except _Woken:
        pass
    end_tree(Tree(tag, pgid, leader_start))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
