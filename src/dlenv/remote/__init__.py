"""How dlenv talks to a machine: one small `Host` protocol (its one variant is `dlenv.ssh.SshHost`).

Fabric's vocabulary (`run`, `sudo`, `put`, `get`): the provisioner takes a `Host` and never
cares how commands travel, so tests can hand it a stand-in (a local bash) and the single-script
channels (Dockerfile, Packer) need no host at all. Port forwarding is only meaningful over SSH:
`SshHost.forward_local` (the product's tunnel is the system ssh client, see dlenv.ssh.tunnel,
so it honours the user's ssh setup).
"""

from dlenv.remote.base import CommandResult, Host, LineSink

__all__ = ["CommandResult", "Host", "LineSink"]
