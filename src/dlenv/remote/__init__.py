"""How dlenv talks to a machine: one small `Host` protocol with SSH, local and docker-exec variants.

Fabric's vocabulary (`run`, `sudo`, `put`, `get`): the provisioner takes a `Host` and never
cares which variant it is, so the same step code runs over SSH on an EC2 box, locally, or inside
a container. Port forwarding is only meaningful over SSH: `SshHost.forward_local` (the product's
tunnel is the system ssh client, see dlenv.ssh.tunnel, so it honours the user's ssh setup).
"""

from dlenv.remote.base import CommandResult, Host, LineSink

__all__ = ["CommandResult", "Host", "LineSink"]
