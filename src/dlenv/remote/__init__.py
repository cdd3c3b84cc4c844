"""How dlenv talks to a machine: one small `Host` protocol with SSH, local and docker-exec variants.

Fabric's vocabulary (`run`, `sudo`, `put`, `get`, `forward_local`): the provisioner, the tunnel
and the smoke test take a `Host` and never care which variant it is, so the same step code runs
over SSH on an EC2 box, locally, or inside a container.
"""

from dlenv.remote.base import CommandResult, Host, LineSink

__all__ = ["CommandResult", "Host", "LineSink"]
