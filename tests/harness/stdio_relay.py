"""A ProxyCommand for tests: relay stdin/stdout to HOST:PORT (what `nc %h %p` does).

ProxyCommand python3 tests/harness/stdio_relay.py %h %p
"""

from __future__ import annotations

import os
import socket
import sys
import threading


def main() -> None:
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        os.write(1, data)


if __name__ == "__main__":
    main()
