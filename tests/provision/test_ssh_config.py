"""ProxyCommand resolution: the target's own first, else the user's ~/.ssh/config entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlenv.ssh.session import proxy_command_for
from dlenv.ssh.target import SshTarget


def test_target_proxy_command_expands(tmp_path: Path) -> None:
    t = SshTarget(host="10.0.0.5", user="ubuntu", port=2222, proxy_command="nc -X 5 %h %p # %r")
    assert proxy_command_for(t) == "nc -X 5 10.0.0.5 2222 # ubuntu"


def test_ssh_config_proxy_command_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(
        "Host gpu-*\n  ProxyCommand aws ssm start-session --target %h --parameters portNumber=%p\n"
        "Host other\n  ProxyCommand none\n"
    )
    t = SshTarget(host="gpu-box", user="ubuntu")
    assert (
        proxy_command_for(t) == "aws ssm start-session --target gpu-box --parameters portNumber=22"
    )
    assert proxy_command_for(SshTarget(host="other", user="u")) is None
    assert proxy_command_for(SshTarget(host="plain", user="u")) is None
