"""Checks behind `dlenv doctor`: each returns OK, WARN or FAIL with what to do next.

A check never raises: a failure becomes a FAIL row whose detail is the fix, so one run shows
every problem at once instead of the first one.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from dlenv.errors import DlenvError

if TYPE_CHECKING:
    from dlenv.cloud.session import Aws


@dataclass
class Check:
    name: str
    status: Literal["OK", "WARN", "FAIL"]
    detail: str


def _aws_checks(settings: Any) -> list[Check]:
    from dlenv.cloud import account
    from dlenv.cloud.aws_errors import translate
    from dlenv.cloud.session import from_settings

    checks: list[Check] = []
    try:
        aws = from_settings(settings)
        region = aws.region_name
        checks.append(Check("region", "OK", region))
    except DlenvError as exc:
        return [Check("region", "FAIL", f"{exc.message}: {exc.hint}")]
    try:
        ident = account.caller_identity(aws)
        checks.append(Check("credentials", "OK", f"account {ident.account} ({ident.arn})"))
    except Exception as exc:
        err = translate(exc, region=region) or DlenvError(str(exc))
        checks.append(Check("credentials", "FAIL", f"{err.message}: {err.hint}"))
        return checks
    checks.extend(quota_checks(aws))
    return checks


def quota_checks(aws: Aws) -> list[Check]:
    """The on-demand vCPU quotas for G and P instances (0 on new accounts: the #1 surprise)."""
    from dlenv.cloud.aws_errors import quota_hint
    from dlenv.cloud.quota import read_quota

    out = []
    for code, label in (
        ("L-DB2E81BA", "G/VT on-demand vCPU quota"),
        ("L-417A185B", "P on-demand vCPU quota"),
    ):
        try:
            value = read_quota(aws, code)
        except Exception as exc:
            out.append(
                Check(
                    label,
                    "WARN",
                    f"cannot read quota {code} ({type(exc).__name__}); "
                    "check it in the Service Quotas console",
                )
            )
            continue
        if value < 4:
            out.append(
                Check(
                    label,
                    "FAIL",
                    f"{value:g} vCPUs: " + quota_hint(code, label, aws.region_name, 8),
                )
            )
        else:
            out.append(Check(label, "OK", f"{value:g} vCPUs ({code})"))
    return out


def _ssh_check() -> Check:
    binary = shutil.which("ssh")
    if not binary:
        return Check(
            "ssh client",
            "FAIL",
            "install OpenSSH (apt-get install openssh-client / brew install openssh)",
        )
    try:
        version = subprocess.run(
            [binary, "-V"], capture_output=True, text=True, timeout=5
        ).stderr.strip()
    except (OSError, subprocess.SubprocessError):
        version = binary
    return Check("ssh client", "OK", version)


def _docker_check() -> Check:
    try:
        import docker

        client = docker.from_env(timeout=5)
        version = client.version().get("Version", "?")
        runtimes = client.info().get("Runtimes", {})
        gpu = (
            "nvidia runtime present"
            if "nvidia" in runtimes
            else "no nvidia runtime (CPU notebooks only)"
        )
        return Check("docker engine", "OK", f"{version}, {gpu}")
    except Exception:
        return Check(
            "docker engine",
            "WARN",
            "not reachable: needed only for `dlenv local`/`dlenv build`; "
            "start Docker (e.g. `sudo systemctl start docker`)",
        )


def _state_check() -> Check:
    from dlenv.paths import state_dir

    try:
        path = state_dir()
    except DlenvError as exc:  # shared or foreign-owned: refused, never chmod-ed
        return Check("state dir", "FAIL", f"{exc.message}: {exc.hint}")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return Check(
            "state dir",
            "FAIL",
            f"{path} is {oct(mode)}: run `chmod 700 {path}` (it holds private keys)",
        )
    return Check("state dir", "OK", str(path))


def _keys_check() -> Check:
    """dlenv's private keys: one that others can read is made 0600 here (OpenSSH would refuse
    it at the worst moment); one that cannot be fixed (another user's) is a FAIL with the fix."""
    from dlenv.cloud.keys import check_private_key
    from dlenv.paths import keys_dir

    try:
        files = sorted(
            p
            for p in keys_dir().glob("dlenv-*")
            if not p.name.endswith((".pub", ".tmp")) and not p.is_dir()
        )
    except DlenvError as exc:
        return Check("private keys", "FAIL", f"{exc.message}: {exc.hint}")
    fixed: list[str] = []
    refused: list[str] = []
    for path in files:
        try:
            check_private_key(path, fixed.append)
        except DlenvError as exc:
            refused.append(f"{exc.message}: {exc.hint}")
    if refused:
        return Check("private keys", "FAIL", "; ".join(refused + fixed))
    if fixed:
        return Check("private keys", "WARN", "; ".join(fixed))
    return Check("private keys", "OK", f"{len(files)} in {keys_dir()}, each private (0600)")


def run_checks(settings: Any, *, aws: bool = True) -> list[Check]:
    checks: list[Check] = []
    runners: list[Callable[[], Any]] = [_state_check, _keys_check, _ssh_check, _docker_check]
    for fn in runners:
        checks.append(fn())
    if aws:
        checks.extend(_aws_checks(settings))
    return checks
