"""The one error family of the library.

Library code raises these; the CLI turns them into one red line plus a hint and exit code 1
(2 for usage errors). Library modules never import click, so the same errors serve tests, the
CLI and anyone embedding dlenv.
"""

from __future__ import annotations


class DlenvError(Exception):
    """A failure the user can act on: `message` says what is wrong, `hint` what to do next."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        host: str | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.host = host
        self.step = step

    def one_line(self) -> str:
        """The message prefixed by host and step when known, e.g. `[mybox] jupyterlab: ...`."""
        where = ""
        if self.host:
            where += f"[{self.host}] "
        if self.step:
            where += f"{self.step}: "
        return f"{where}{self.message}"


class UsageError(DlenvError):
    """Bad input detected before anything was created (exit code 2, like click's own)."""

    exit_code = 2


class ConfigError(UsageError):
    """dlenv.toml or a DLENV_* variable holds something invalid."""


class NotFoundError(DlenvError):
    """A named environment (or resource) does not exist."""


class AwsError(DlenvError):
    """An AWS API error translated into what the user should do next."""

    def __init__(
        self, message: str, hint: str | None = None, *, code: str | None = None, **kw: str | None
    ) -> None:
        super().__init__(message, hint, **kw)
        self.code = code


class CapacityError(AwsError):
    """No capacity for the type in an AZ; the launcher may try the next AZ."""


class SshError(DlenvError):
    """SSH could not connect, authenticate or verify the host key."""


class ProvisionError(DlenvError):
    """A provisioning step failed on a host."""


class DockerError(DlenvError):
    """The Docker engine is missing, unreachable, or a build/run failed."""


# -- SSH failures, told apart by type (never by message text) ---------------------------------
class HostKeyUnknownError(SshError):
    """The host presented a key that no trust store (dlenv's, the user's) knows."""


class HostKeyChangedError(SshError):
    """The host presented a key different from the one recorded for it (possible MITM)."""


class SshAuthError(SshError):
    """The server refused the login (wrong user, key not authorised)."""


class SshUnreachableError(SshError):
    """No SSH server answered (refused, no route, DNS, the ProxyCommand failed)."""


class SshTimeoutError(SshError):
    """SSH (or a command over it) did not finish in time."""


# -- local state --------------------------------------------------------------------------------
class StateFileError(DlenvError):
    """A local state file (known_hosts, ssh config include, tunnel record, key, config) is
    unreadable or malformed; the message names the file and the fix.

    `problem` is what is wrong with the file in a few words ("is a directory, not a file"), for
    a caller that words its own line (a corrupt tunnel record is dropped with one warning).
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        problem: str | None = None,
        **kw: str | None,
    ) -> None:
        super().__init__(message, hint, **kw)
        self.problem = problem


class LockedError(DlenvError):
    """Another dlenv process holds the lock on an environment (or a shared state file)."""
