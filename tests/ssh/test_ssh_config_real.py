"""The ssh config include, read back by the real OpenSSH client.

`ssh -G` parses what dlenv wrote exactly as `ssh dlenv-NAME` (and VS Code) will; a real login to a
host container proves the include works through a state dir with a space (macOS's default).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from dlenv.errors import UsageError
from dlenv.ssh import config, known_hosts
from dlenv.ssh.target import SshTarget, environment_target

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")


@pytest.fixture
def odd_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state dir whose path has a space and a `%` (ssh's token character)."""
    state = tmp_path / "Application Support" / "dl%env"
    state.mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("DLENV_STATE_DIR", str(state))
    monkeypatch.setenv("DLENV_USER_SSH_CONFIG", str(tmp_path / "home" / ".ssh" / "config"))
    return state


def ssh_g(user_config: Path, alias: str) -> dict[str, str]:
    """`ssh -G` of `alias` through the user's config (which only Includes dlenv's file)."""
    out = subprocess.run(
        ["ssh", "-G", "-F", str(user_config), alias],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}


def test_entries_parse_back_exactly_with_ssh_g(odd_state: Path) -> None:
    key = odd_state / "keys" / "box key"
    key.parent.mkdir(mode=0o700)
    key.write_text("not used by -G\n")
    proxy = "nc -X 5 -x 'proxy host:1080' %h %p"
    target = environment_target(
        "box",
        host="54.1.2.3",
        tag_user="ubuntu",
        ssh_user=None,
        key_file=key,
        proxy_command=proxy,
    )
    config.write_entry("box", target)
    user_config = Path(os.environ["DLENV_USER_SSH_CONFIG"])
    assert user_config.read_text().splitlines()[1] == f'Include "{config.include_path()}"'
    got = ssh_g(user_config, "dlenv-box")
    assert got["hostname"] == "54.1.2.3"
    assert got["user"] == "ubuntu"
    # -G shows IdentityFile before %-expansion (ssh expands `%%` to `%` when it loads the key)
    assert got["identityfile"] == str(key).replace("%", "%%")
    assert got["userknownhostsfile"] == str(odd_state / "known_hosts")
    assert got["hostkeyalias"] == "dlenv-box"
    assert got["proxycommand"] == proxy
    assert got["stricthostkeychecking"] == "true"
    assert got["globalknownhostsfile"] == "none"
    # written twice (an IP change on start): one entry, one Include line
    config.write_entry("box", target.with_(host="54.9.9.9"))
    assert ssh_g(user_config, "dlenv-box")["hostname"] == "54.9.9.9"
    assert config.include_path().read_text().count("Host dlenv-box\n") == 1
    assert user_config.read_text().count("Include ") == 1


def test_a_host_flag_target_checks_both_stores(odd_state: Path, tmp_path: Path) -> None:
    user_kh = tmp_path / "home" / ".ssh" / "known_hosts"
    target = SshTarget.parse(
        "me@10.0.0.5:2222", known_hosts=odd_state / "known_hosts", user_known_hosts=user_kh
    )
    config.write_entry("any", target)
    got = ssh_g(Path(os.environ["DLENV_USER_SSH_CONFIG"]), "dlenv-any")
    assert got["userknownhostsfile"] == f"{odd_state / 'known_hosts'} {user_kh}"
    assert got["port"] == "2222" and got["user"] == "me"


@pytest.mark.parametrize(
    "make",
    [
        lambda s: environment_target(
            "box",
            host="1.2.3.4",
            tag_user="x\nProxyCommand touch /tmp/pwned",
            ssh_user=None,
            key_file=None,
            proxy_command=None,
        ),
        lambda s: environment_target(
            "box",
            host="1.2.3.4",
            tag_user="ubuntu",
            ssh_user="root ProxyCommand=x",
            key_file=None,
            proxy_command=None,
        ),
        lambda s: environment_target(
            "box",
            host="1.2.3.4\n  ProxyCommand x",
            tag_user="ubuntu",
            ssh_user=None,
            key_file=None,
            proxy_command=None,
        ),
        lambda s: SshTarget(host="1.2.3.4", user="u", proxy_command="nc %h %p\nHost *"),
        lambda s: SshTarget(host="1.2.3.4", user="u", key_file=s / 'k"ey'),
        lambda s: SshTarget(host="1.2.3.4", user="u", key_file=s / "k\\ey"),
    ],
    ids=["tag-user-newline", "ssh-user-space", "host-newline", "proxy-newline", "quote", "bslash"],
)
def test_hostile_values_are_refused_and_nothing_is_written(odd_state: Path, make) -> None:
    user_config = Path(os.environ["DLENV_USER_SSH_CONFIG"])
    with pytest.raises(UsageError) as err:
        config.write_entry("box", make(odd_state))
    assert "\n" not in err.value.one_line()
    assert not config.include_path().exists() and not user_config.exists()


def test_the_tag_user_error_names_its_source() -> None:
    with pytest.raises(UsageError) as err:
        environment_target(
            "mybox",
            host="1.2.3.4",
            tag_user="x\nProxyCommand touch /tmp/pwned",
            ssh_user=None,
            key_file=None,
            proxy_command=None,
        )
    assert err.value.message == (
        "EC2 tag dlenv:user of mybox holds 'x\\nProxyCommand touch /tmp/pwned', "
        "which is not a valid user name"
    )


def _write_one(state: str, user_config: str, i: int) -> None:
    os.environ["DLENV_STATE_DIR"] = state
    os.environ["DLENV_USER_SSH_CONFIG"] = user_config
    target = SshTarget(host=f"10.0.0.{i}", user="ubuntu", host_key_alias=f"dlenv-p{i}")
    config.write_entry(f"p{i}", target)


def test_parallel_writers_lose_no_entry(odd_state: Path) -> None:
    user_config = Path(os.environ["DLENV_USER_SSH_CONFIG"])
    user_config.parent.mkdir(parents=True)
    user_config.write_text("Host work\n    User me\n")
    config.write_entry("old", SshTarget(host="10.9.9.9", user="u", host_key_alias="dlenv-old"))
    threads = [
        threading.Thread(
            target=config.write_entry,
            args=(f"t{i}", SshTarget(host=f"10.1.0.{i}", user="u", host_key_alias=f"dlenv-t{i}")),
        )
        for i in range(10)
    ]
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_write_one, args=(str(odd_state), str(user_config), i))
        for i in range(10)
    ]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = {"old", *(f"t{i}" for i in range(10)), *(f"p{i}" for i in range(10))}
    for name in names:
        assert config.has_entry(name), name
    text = user_config.read_text()
    assert text.count("Include ") == 1 and "Host work" in text
    for name in ("old", "t3", "p7"):
        assert ssh_g(user_config, f"dlenv-{name}")["hostkeyalias"] == f"dlenv-{name}"
    assert not list(odd_state.glob(".ssh_config.*.tmp"))


@pytest.mark.docker
def test_real_login_through_a_state_dir_with_a_space(host, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    state = home / "Library" / "Application Support" / "dlenv"
    state.mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DLENV_STATE_DIR", str(state))
    user_config = home / ".ssh" / "config"
    monkeypatch.setenv("DLENV_USER_SSH_CONFIG", str(user_config))
    key = state / "keys" / "box.pem"
    key.parent.mkdir(mode=0o700)
    shutil.copy(host.key, key)
    key.chmod(0o600)
    # the keys as `up` records them from the console: under the alias, never the address
    known_hosts.add_host_keys("dlenv-box", host.host_keys)
    target = environment_target(
        "box",
        host="127.0.0.1",
        tag_user="dlenv",
        ssh_user=None,
        key_file=key,
        proxy_command=None,
    ).with_(port=host.port)
    config.write_entry("box", target)
    proc = subprocess.run(
        ["ssh", "-F", str(user_config), "-o", "BatchMode=yes", "dlenv-box", "echo", "logged-in"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "logged-in"
    # a wrong recorded key is refused by the same entry (checking is on, never prompting)
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ9NUxqPZu5a7bMkJ0W2GQFEu0S0Rk0oQZ0J6n9Z7l2V"
    known_hosts.add_host_keys("dlenv-box", [other])
    proc = subprocess.run(
        ["ssh", "-F", str(user_config), "-o", "BatchMode=yes", "dlenv-box", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 255 and "Host key verification failed" in proc.stderr
