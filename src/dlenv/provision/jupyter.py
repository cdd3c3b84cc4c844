"""What `dlenv jupyter` needs from a provisioned host, defined once from the manifest.

The token lives in a 0600 file owned by the login user (never on a command line or in a unit
file), so it is read over SSH as that user; JupyterLab listens on 127.0.0.1 only and is reached
through an SSH tunnel. `token_script` checks the service and reads the token in one round trip;
the tunnel runs it with the system ssh client, `fetch_token` with any `Host`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlenv.errors import DlenvError
from dlenv.provision.manifest import Stack, load_stack
from dlenv.ssh.command import join
from dlenv.ssh.host import Host

SERVICE_DOWN = 3
NOT_ANSWERING = 4
_TOKEN = re.compile(r"[0-9a-f]{32,}")


@dataclass(frozen=True)
class RemoteJupyter:
    port: int
    token_file: str
    service: str

    @classmethod
    def from_stack(cls, stack: Stack | None = None) -> RemoteJupyter:
        stack = stack or load_stack()
        return cls(
            int(stack.get("jupyter.port")),
            str(stack.get("jupyter.token_file")),
            str(stack.get("jupyter.service")),
        )

    def token_script(self) -> str:
        """Exit 3: service not running; 4: not answering on its port; else print the token."""
        active = join(["systemctl", "is-active", "--quiet", self.service])
        api = f"http://127.0.0.1:{int(self.port)}/api"
        answers = join(["curl", "-fsS", "-o", "/dev/null", "--max-time", "5", api])
        return f"{active} || exit {SERVICE_DOWN}; {answers} || exit {NOT_ANSWERING}; " + join(
            ["cat", self.token_file]
        )

    def token_from(self, exit_code: int, output: str, label: str, name_hint: str) -> str:
        """The token from `token_script`'s result, or the error that says what to run."""
        if exit_code in (SERVICE_DOWN, NOT_ANSWERING):
            state = "is not running" if exit_code == SERVICE_DOWN else "does not answer on its port"
            raise DlenvError(
                f"the JupyterLab service on {label} {state}",
                f"reinstall/restart it with `dlenv provision {name_hint} --only jupyterlab-service`",
                host=label,
            )
        token = output.strip()
        if exit_code != 0 or not _TOKEN.fullmatch(token):
            raise DlenvError(
                f"no JupyterLab token at {self.token_file} on {label}",
                f"provision the host: `dlenv provision {name_hint}`",
                host=label,
            )
        return token


def fetch_token(host: Host, stack: Stack | None = None, name_hint: str = "NAME") -> str:
    jup = RemoteJupyter.from_stack(stack)
    res = host.run(jup.token_script())
    return jup.token_from(res.exit_code, res.output, host.label, name_hint)
