"""Capture the terminal UI on a run folder as an SVG for the README.

    .venv/bin/phasegate demo --headless --run-dir /tmp/demo-run > /dev/null
    .venv/bin/python docs/capture.py /tmp/demo-run docs/demo-completed.svg

The screen is exactly what `phasegate watch RUN_DIR` shows at 100×30 (headless, via Textual's own
screenshot export), so the picture is a real capture of a real run.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from phasegate.tui.app import create_app


async def capture(run_dir: Path, out: Path, size: tuple[int, int]) -> None:
    app = create_app(run_dir, mode="watch")
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.5)  # one poll of the journal and a redraw
        out.write_text(app.export_screenshot(title=f"phasegate watch {run_dir.name}"))
    app.reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="100x30", help="columns x rows (default 100x30)")
    args = parser.parse_args()
    columns, rows = (int(n) for n in args.size.split("x"))
    asyncio.run(capture(args.run_dir, args.out, (columns, rows)))


if __name__ == "__main__":
    main()
