"""Speak phasegate's child protocol with the standard library only: JSON lines on PHASEGATE_EVENTS_FD."""

import json
import os

_fd = os.environ.get("PHASEGATE_EVENTS_FD")
_stream = os.fdopen(int(_fd), "w", buffering=1, closefd=False) if _fd else None


def emit(**event):
    """Send one event; a no-op when the script runs outside phasegate."""
    if _stream is not None:
        _stream.write(json.dumps(event) + "\n")
