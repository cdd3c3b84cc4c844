"""stdin/stdout <-> TCP relay: the ProxyCommand the end-to-end test uses to reach a container.

usage: python relay.py HOST PORT
It stands where users put `aws ssm start-session ...` or `ssh -W %h:%p bastion`: dlenv's
documented `ssh_proxy_command` setting, used by both paramiko and the ssh client.
"""

import socket
import sys
import threading


def main() -> None:
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))

    def upstream() -> None:
        while chunk := sys.stdin.buffer.read1(65536):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while chunk := sock.recv(65536):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
