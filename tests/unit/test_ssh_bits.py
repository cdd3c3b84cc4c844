from __future__ import annotations

import stat

import pytest

from dlenv.cloud.hostkeys import parse_console_host_keys
from dlenv.errors import UsageError
from dlenv.ssh import config as sshconfig
from dlenv.ssh import known_hosts
from dlenv.ssh.target import SshTarget

CONSOLE = """[   12.3] cloud-init[812]: Generating public/private ed25519 key pair.
ec2:
ec2: #############################################################
ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
ec2: 256 SHA256:abc root@ip-172-31-1-1 (ED25519)
ec2: -----END SSH HOST KEY FINGERPRINTS-----
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKey= root@ip-172-31-1-1
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEd25519Key root@ip-172-31-1-1
-----END SSH HOST KEY KEYS-----
"""


def test_console_host_keys_are_parsed():
    assert parse_console_host_keys(CONSOLE) == [
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKey=",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEd25519Key",
    ]
    assert parse_console_host_keys("booting...\n") == []


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DLENV_USER_SSH_CONFIG", str(tmp_path / "home" / ".ssh" / "config"))
    return tmp_path


def test_ssh_config_entry_and_single_include(state):
    user_config = state / "home" / ".ssh" / "config"
    user_config.parent.mkdir(parents=True)
    user_config.write_text("Host work\n    User me\n")
    target = SshTarget(
        host="54.1.2.3",
        user="ubuntu",
        key_file=state / "k",
        known_hosts=state / "kh",
        proxy_command="aws ssm start-session --target %h",
        name="box",
        host_key_alias="dlenv-box",
    )
    sshconfig.write_entry("box", target)
    sshconfig.write_entry("box", target.with_(host="54.9.9.9"))
    sshconfig.write_entry("other", target.with_(name="other"))
    text = user_config.read_text()
    assert text.startswith(sshconfig.MARK) and text.count("Include ") == 1 and "Host work" in text
    assert stat.S_IMODE(user_config.stat().st_mode) == 0o600
    entries = sshconfig.include_path().read_text()
    assert entries.count("Host dlenv-box") == 1 and "HostName 54.9.9.9" in entries
    assert "StrictHostKeyChecking yes" in entries and "ProxyCommand aws ssm" in entries
    assert (
        sshconfig.remove_entry("box")
        and not sshconfig.has_entry("box")
        and sshconfig.has_entry("other")
    )


def test_known_hosts_replace_and_remove(state):
    known_hosts.add_host_keys("dlenv-box", ["ssh-ed25519 AAAA1 root@x"])
    known_hosts.add_host_keys("dlenv-box", ["ssh-ed25519 AAAA2"])
    known_hosts.add_host_keys("[127.0.0.1]:2222", ["ssh-ed25519 AAAA3"])
    assert known_hosts.known_keys("dlenv-box") == ["ssh-ed25519 AAAA2"]
    known_hosts.remove_host("dlenv-box")
    assert known_hosts.known_keys("dlenv-box") == []
    assert known_hosts.known_keys("[127.0.0.1]:2222")
    path = known_hosts.dlenv_known_hosts()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        ("ubuntu@10.1.2.3", ("10.1.2.3", "ubuntu", 22)),
        ("admin@host.example:2222", ("host.example", "admin", 2222)),
        ("10.0.0.5", ("10.0.0.5", "ubuntu", 22)),
        ("me@[::1]:2200", ("::1", "me", 2200)),
    ],
)
def test_host_spec_parsing(spec, expect):
    t = SshTarget.parse(spec)
    assert (t.host, t.user, t.port) == expect


@pytest.mark.parametrize(
    "spec",
    [
        "user@",
        "a b@host",
        "u@h:99999",
        "u@h:x",
        "u\nProxyCommand=touch /tmp/x@h",
        "u@h\n",
        "u@h -oProxyCommand=x",
        "-oProxyCommand=x@h",
        "u@[not-v6]:22",
        "u@-h",
        "u@h%h",
        'u"@h',
    ],
)
def test_bad_host_specs(spec):
    with pytest.raises(UsageError):
        SshTarget.parse(spec)


def test_slow_ssh_shows_the_console_tail(state):
    """SSH never answers: after `slow_after` the console tail is shown once, then a clear error."""
    import sys

    from dlenv.errors import SshTimeoutError
    from dlenv.ssh import wait as sshwait

    target = SshTarget(
        host="10.9.9.9",
        user="ubuntu",
        known_hosts=state / "kh",
        name="box",
        proxy_command=f"{sys.executable} -c 'import sys; sys.exit(1)'",
    )
    (state / "kh").write_text("")
    said: list[str] = []
    import time

    with pytest.raises(SshTimeoutError, match="did not succeed before the timeout"):
        sshwait.wait_for_login(
            target,
            time.monotonic() + 4,
            said.append,
            console_keys=lambda: [],
            console_wait=0,
            console_tail=lambda: "cloud-init[812]: still running modules",
            slow_after=0,
        )
    shown = [s for s in said if "console ends with" in s]
    assert len(shown) == 1 and "cloud-init[812]: still running modules" in shown[0]
