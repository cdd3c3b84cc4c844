"""A free TCP port on 127.0.0.1: the one helper every test that listens or publishes uses.

Never a fixed port: xdist workers (and other users of the machine) run at the same time.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (free now; bind it soon)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
