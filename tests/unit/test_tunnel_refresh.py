"""The background tunnel follows an environment to its new address (spot interruption, stop and
start): the supervisor asks its resolver before each reconnect, waits while the environment is not
running, and dials the address the resolver gives, with the same alias-checked host key options.
A stand-in ssh binary records each invocation; no network."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dlenv.ssh import tunnel
from dlenv.ssh.target import SshTarget


def _target(tmp_path: Path, host: str = "54.1.2.3") -> SshTarget:
    return SshTarget(
        host=host,
        user="ubuntu",
        key_file=tmp_path / "k",
        known_hosts=tmp_path / "kh",
        name="box",
        host_key_alias="dlenv-box",
    )


def test_spec_carries_its_refresh_through_the_supervisors_stdin(tmp_path: Path) -> None:
    refresh = {"resolver": "dlenv.ops.jupyter_access:current_target", "region": "us-east-1"}
    spec = tunnel.TunnelSpec("box", _target(tmp_path), 18888, 8888, "http://x", refresh=refresh)
    again = tunnel.TunnelSpec.from_json(spec.to_json())
    assert again.refresh == refresh and again.target == spec.target
    plain = tunnel.TunnelSpec("h", _target(tmp_path), 1, 2, "u")  # a --host tunnel: no refresh
    assert tunnel.TunnelSpec.from_json(plain.to_json()).refresh is None


def test_only_dlenv_resolvers_are_imported(tmp_path: Path) -> None:
    spec = tunnel.TunnelSpec(
        "box", _target(tmp_path), 1, 2, "u", refresh={"resolver": "os:system", "region": "x"}
    )
    assert tunnel._resolver(spec, print) is None
    spec.refresh = {"resolver": "dlenv.ops.jupyter_access:current_target", "region": "us-east-1"}
    assert callable(tunnel._resolver(spec, print))


def test_supervisor_waits_while_stopped_then_dials_the_new_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "ssh"
    fake.write_text(
        f'#!{sys.executable}\nimport sys\nopen({str(calls)!r}, "a").write(sys.argv[-1] + "\\n")\nsys.exit(1)\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(tunnel, "ssh_binary", lambda: str(fake))
    monkeypatch.setattr(tunnel.time, "sleep", lambda _s: None)
    answers = iter([None, None, _target(tmp_path, "54.9.9.9"), _target(tmp_path, "54.9.9.9")])
    asked: list[str] = []

    def resolve(current: SshTarget) -> SshTarget | None:
        asked.append(current.host)
        return next(answers)

    said: list[str] = []
    spec = tunnel.TunnelSpec("box", _target(tmp_path), 18888, 8888, "u")
    with pytest.raises(Exception, match="keeps dropping"):
        tunnel.supervise(spec, said.append, max_restarts=2, resolve=resolve)
    # the first dial went to the old address; while stopped nothing was dialled; then the new one
    assert calls.read_text().split() == ["54.1.2.3", "54.9.9.9", "54.9.9.9"]
    assert said.count("box is not running now; asking again in 2s") == 1, said
    assert "box is now at 54.9.9.9; reconnecting there" in said
