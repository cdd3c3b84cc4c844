"""What `dlenv jupyter` needs from a provisioned host: the token and the port.

The token lives in a 0600 file owned by the login user (never on a command line or in a unit
file), so it is read over SSH as that user; JupyterLab listens on 127.0.0.1 only and is reached
through `host.forward_local(local_port, jupyter_port())`.
"""

from __future__ import annotations

import re

from dlenv.errors import ProvisionError
from dlenv.provision.manifest import Stack, load_stack
from dlenv.remote.base import Host


def jupyter_port(stack: Stack | None = None) -> int:
    return int((stack or load_stack()).get("jupyter.port"))


def fetch_token(host: Host, stack: Stack | None = None) -> str:
    path = (stack or load_stack()).get("jupyter.token_file")
    res = host.run(f"cat {path}")
    token = res.output.strip()
    if res.exit_code != 0 or not re.fullmatch(r"[0-9a-f]{32,}", token):
        raise ProvisionError(
            f"no JupyterLab token at {path}",
            "provision the host first: dlenv provision (it installs the Jupyter service)",
            host=host.label,
        )
    return token
