"""THE host-key policy and the trust stores it reads, with real keys (ssh-keygen) and real
hashed known_hosts files; corrupt state files give one line naming the file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dlenv.errors import HostKeyChangedError, HostKeyUnknownError, StateFileError
from dlenv.ssh import config, known_hosts
from dlenv.ssh.policy import HostKeyPolicy
from dlenv.ssh.target import SshTarget

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


def new_key(tmp: Path, name: str) -> tuple[str, str]:
    path = tmp / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    keytype, blob = path.with_suffix(".pub").read_text().split()[:2]
    return keytype, blob


@pytest.fixture
def stores(tmp_path: Path) -> tuple[SshTarget, Path, Path]:
    dlenv_kh = tmp_path / "state" / "known_hosts"
    dlenv_kh.parent.mkdir()
    user_kh = tmp_path / "home" / ".ssh" / "known_hosts"
    user_kh.parent.mkdir(parents=True)
    target = SshTarget.parse("me@box.example:2222", known_hosts=dlenv_kh, user_known_hosts=user_kh)
    return target, dlenv_kh, user_kh


def test_a_key_in_the_users_hashed_known_hosts_is_accepted_and_never_written(
    tmp_path: Path, stores
) -> None:
    target, dlenv_kh, user_kh = stores
    keytype, blob = new_key(tmp_path, "host")
    user_kh.write_text(f"other.example {keytype} {new_key(tmp_path, 'o')[1]}\n")
    user_kh.write_text(user_kh.read_text() + f"[box.example]:2222 {keytype} {blob}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(user_kh)], check=True)  # |1|... lines
    assert user_kh.read_text().startswith("|1|")
    before = user_kh.read_bytes()
    policy = HostKeyPolicy(target, ask=False)
    policy.decide(keytype, blob)
    assert policy.recorded is None and not dlenv_kh.exists()
    assert user_kh.read_bytes() == before
    # the same key type but another key in the user's store: changed, even when trusting new keys
    with pytest.raises(HostKeyChangedError) as err:
        HostKeyPolicy(target, trust_new=True).decide(keytype, new_key(tmp_path, "evil")[1])
    assert "HOST KEY CHANGED" in err.value.message and "ssh-keygen -R" in err.value.hint
    assert not dlenv_kh.exists()


def test_unknown_without_a_terminal_is_refused_with_the_hint(tmp_path: Path, stores) -> None:
    target, dlenv_kh, _ = stores
    keytype, blob = new_key(tmp_path, "host")
    with pytest.raises(HostKeyUnknownError) as err:
        HostKeyPolicy(target, ask=False).decide(keytype, blob)
    assert "--trust-new-host-key" in err.value.hint
    assert known_hosts.fingerprint(blob) in err.value.message
    assert not dlenv_kh.exists()


def test_trust_new_records_in_dlenvs_store_and_says_so(tmp_path: Path, stores) -> None:
    target, dlenv_kh, user_kh = stores
    keytype, blob = new_key(tmp_path, "host")
    said: list[str] = []
    policy = HostKeyPolicy(target, trust_new=True, say=said.append)
    policy.decide(keytype, blob)
    assert dlenv_kh.read_text() == f"[box.example]:2222 {keytype} {blob}\n"
    assert len(said) == 1 and known_hosts.fingerprint(blob) in said[0]
    assert not user_kh.exists()
    assert known_hosts.check(target, keytype, blob) == "known"
    # and OpenSSH is pointed at the same file, first
    from dlenv.ssh.openssh import options

    assert dict(options(target))["UserKnownHostsFile"] == [str(dlenv_kh), str(user_kh)]


@pytest.mark.parametrize("answer", [True, False])
def test_on_a_terminal_the_fingerprint_is_shown_and_asked(tmp_path: Path, stores, answer) -> None:
    target, dlenv_kh, _ = stores
    keytype, blob = new_key(tmp_path, "host")
    asked: list[tuple[str, str]] = []

    def confirm(question: str, fp: str) -> bool:
        asked.append((question, fp))
        return answer

    policy = HostKeyPolicy(target, ask=True, confirm=confirm)
    if answer:
        policy.decide(keytype, blob)
        assert known_hosts.check(target, keytype, blob) == "known"
    else:
        with pytest.raises(HostKeyUnknownError):
            policy.decide(keytype, blob)
        assert not dlenv_kh.exists()
    [(question, fp)] = asked
    assert fp == known_hosts.fingerprint(blob) and fp in question
    assert "Are you sure you want to continue connecting (yes/no" in question


def test_an_environment_is_never_asked(tmp_path: Path) -> None:
    target = SshTarget(
        host="1.2.3.4", user="u", known_hosts=tmp_path / "kh", host_key_alias="dlenv-box"
    )
    assert HostKeyPolicy(target).ask is False


def test_a_corrupt_dlenv_known_hosts_is_one_line_but_removal_still_works(
    tmp_path: Path, stores
) -> None:
    target, dlenv_kh, _ = stores
    keytype, blob = new_key(tmp_path, "host")
    dlenv_kh.write_text(f"dlenv-box {keytype} {blob}\ngarbage-without-a-key\n")
    with pytest.raises(StateFileError) as err:
        known_hosts.check(target, keytype, blob)
    assert str(dlenv_kh) in err.value.message and "line 2" in err.value.message
    assert err.value.hint and "\n" not in err.value.one_line()
    assert known_hosts.remove_host("dlenv-box", dlenv_kh)  # `down` must get past it
    assert dlenv_kh.read_text() == "garbage-without-a-key\n"
    dlenv_kh.write_bytes(b"dlenv-box ssh-ed25519 \xff\xfe\n")
    with pytest.raises(StateFileError, match="not UTF-8"):
        known_hosts.known_keys("dlenv-box", dlenv_kh)
    assert known_hosts.remove_host("dlenv-box", dlenv_kh) and dlenv_kh.read_bytes() == b""


def test_a_malformed_include_is_one_line_and_down_still_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DLENV_USER_SSH_CONFIG", str(tmp_path / "home" / ".ssh" / "config"))
    for name in ("a", "b"):
        config.write_entry(
            name, SshTarget(host="10.0.0.1", user="u", host_key_alias=f"dlenv-{name}")
        )
    path = config.include_path()
    text = path.read_text()
    path.write_text(text.replace("# dlenv:end a\n", ""))  # a's block never ends
    with pytest.raises(StateFileError) as err:
        config.write_entry("c", SshTarget(host="10.0.0.3", user="u"))
    assert str(path) in err.value.message and f"remove {path}" in (err.value.hint or "")
    said: list[str] = []
    assert config.remove_entry("a", said.append)
    assert len(said) == 1 and str(path) in said[0]
    assert "dlenv:begin a" not in path.read_text() and config.has_entry("b")
    config.write_entry("c", SshTarget(host="10.0.0.3", user="u"))  # well-formed again
    assert config.has_entry("c") and config.has_entry("b")
