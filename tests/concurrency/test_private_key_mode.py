"""A private key that group/others can read is fixed to 0600 with one line, or refused with one.

OpenSSH refuses such a key ("UNPROTECTED PRIVATE KEY FILE") only once it is connecting; `up`,
`ssh` and `doctor` say it first. `ssh` runs with ssh_proxy_command `false`, so it never
connects to the fake address moto gave the instance.
"""

from __future__ import annotations

import json
import os
import stat

import pytest


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def env_with_key(lab):
    name = "pk-mode"
    m = lab.machine()
    r = m.run("up", name, "--no-provision", "--yes")
    assert r.code == 0, r.err
    yield name, m
    assert m.run("down", name, "--yes").code == 0
    assert lab.aws(name) == lab.NOTHING


def test_up_ssh_and_doctor_fix_a_key_others_can_read(env_with_key):
    name, m = env_with_key
    key = m.key(name)
    assert _mode(key) == 0o600

    os.chmod(key, 0o644)
    r = m.run("up", name, "--no-provision", "--yes")
    assert r.code == 0, r.err
    fixed = [ln for ln in r.err.splitlines() if "made it 0600" in ln]
    assert len(fixed) == 1 and str(key) in fixed[0] and "mode 644" in fixed[0], r.err
    assert _mode(key) == 0o600

    os.chmod(key, 0o640)
    m.env["DLENV_SSH_PROXY_COMMAND"] = "false"
    r = m.run("ssh", name, "--", "true")
    del m.env["DLENV_SSH_PROXY_COMMAND"]
    assert r.code != 0  # ProxyCommand false: nothing was reached
    assert f"private key {key} was accessible to other users (mode 640)" in r.err, r.err
    assert _mode(key) == 0o600

    os.chmod(key, 0o604)
    r = m.run("doctor", "--no-aws", "--json")
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    assert checks["private keys"]["status"] == "WARN", checks["private keys"]
    assert str(key) in checks["private keys"]["detail"]
    assert _mode(key) == 0o600
    r = m.run("doctor", "--no-aws", "--json")
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    assert checks["private keys"]["status"] == "OK", checks["private keys"]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's needs root")
def test_a_key_of_another_user_is_refused_with_one_line(env_with_key):
    name, m = env_with_key
    key = m.key(name)
    os.chown(key, 4242, 4242)
    os.chmod(key, 0o644)
    try:
        r = m.run("up", name, "--no-provision", "--yes")
        assert r.code == 1, r.err
        errors = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
        assert errors == [
            f"error: private key {key} belongs to another user (uid 4242); OpenSSH refuses it"
        ], r.err
        assert _mode(key) == 0o644  # refused, not changed
        r = m.run("doctor", "--no-aws", "--json")
        checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
        assert checks["private keys"]["status"] == "FAIL"
        assert r.code == 1
    finally:
        os.chown(key, os.getuid(), os.getgid())
        os.chmod(key, 0o600)
