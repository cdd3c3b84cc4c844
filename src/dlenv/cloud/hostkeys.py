"""SSH host keys as the instance printed them on its serial console (cloud-init does this).

Reading them from EC2 (an authenticated AWS API) and not from the network is what lets the first
SSH connection be verified instead of trusted blindly.
"""

from __future__ import annotations

import re

from dlenv.cloud.session import Aws

_BLOCK = re.compile(r"-----BEGIN SSH HOST KEY KEYS-----(.*?)-----END SSH HOST KEY KEYS-----", re.S)
_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp\d+|ssh-rsa)\s+([A-Za-z0-9+/=]+)", re.M)


def parse_console_host_keys(console: str) -> list[str]:
    """`keytype base64` lines from the last host-key block of a console log."""
    blocks = _BLOCK.findall(console or "")
    if not blocks:
        return []
    return [f"{m.group(1)} {m.group(2)}" for m in _KEY.finditer(blocks[-1])]


def console_host_keys(aws: Aws, instance_id: str) -> list[str]:
    """Host keys from get_console_output; [] while the console has none yet (or on any error)."""
    try:
        out = aws.ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output") or ""
    except Exception:
        return []
    return parse_console_host_keys(out)


def console_tail(aws: Aws, instance_id: str, lines: int = 8) -> str:
    try:
        out = aws.ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output") or ""
    except Exception:
        return ""
    return "\n".join(out.strip().splitlines()[-lines:])
