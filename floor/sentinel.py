"""The sentinel of one owner's process trees: told of each tree as it starts and ends, it ends every tree still
open when its pipe closes, whether the owner closed it or died (kill -9 included).
Run as `python -m phasegate.floor.sentinel`; reads "+ TAG PGID START" and "- TAG" lines on stdin."""

from __future__ import annotations

import signal
import sys
from typing import Any

from phasegate.floor.processes import Tree, end_tree


class _Woken(Exception):
    """A signal asked the sentinel to act now."""


def _wake(_signum: int, _frame: Any) -> None:
    raise _Woken


def _read(trees: dict[str, Tree]) -> None:
    """Keep `trees` up to date from the owner's lines until its pipe closes."""
    for line in sys.stdin.buffer:  # blocks until the owner writes, closes, or dies
        match line.decode(errors="replace").split():
            case ["+", tag, pgid, start] if pgid.isdigit():
                trees[tag] = Tree(tag, int(pgid), None if start == "-" else start)
            case ["-", tag]:
                trees.pop(tag, None)


def main() -> int:
    """Follow the owner's trees; at end of file (or a signal), end those still open."""
    trees: dict[str, Tree] = {}
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _wake)
    try:
        _read(trees)
    except _Woken:
        pass
    for tree in trees.values():
        end_tree(tree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
