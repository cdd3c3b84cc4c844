"""`dlenv ssh-key` through the real CLI in a subprocess against moto's server."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from awsfake import dlenv_resources


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def _key(path: Path, comment: str) -> str:
    from dlenv.cloud import keys

    return keys.generate_local_key(path, comment)


def test_ssh_key_import_journey(cli, tmp_path):
    import boto3

    env = "keyjourney"
    # The environment's key pair was made on another machine: EC2 has it, this machine does not.
    elsewhere = tmp_path / "elsewhere" / f"dlenv-{env}"
    elsewhere.parent.mkdir()
    public = _key(elsewhere, f"dlenv-{env}")
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=cli.endpoint)
    ec2.import_key_pair(KeyName=f"dlenv-{env}", PublicKeyMaterial=public.encode())
    try:
        r = cli("up", env, "--no-provision", "--yes")
        assert r.code == 1, (r.out, r.err)
        assert "Traceback" not in r.err
        [line] = _errors(r.err)
        assert f"EC2 key pair dlenv-{env} exists in us-east-1" in line
        assert f"`dlenv ssh-key import {env} FILE`" in r.err and f"`dlenv down {env}`" in r.err
        assert dlenv_resources("us-east-1", env, cli.endpoint)["instances"] == []

        r = cli("ssh-key", "path", env)
        assert r.code == 1 and len(_errors(r.err)) == 1 and "Traceback" not in r.err

        wrong = tmp_path / "wrong"
        _key(wrong, "someone-else")
        r = cli("ssh-key", "import", env, str(wrong))
        assert r.code == 2, (r.out, r.err)
        [line] = _errors(r.err)
        assert f"does not match EC2 key pair dlenv-{env}" in line and "SHA256:" in line
        assert "Traceback" not in r.err

        junk = tmp_path / "junk"
        junk.write_text("not a key\n")
        r = cli("ssh-key", "import", env, str(junk))
        assert r.code == 2 and len(_errors(r.err)) == 1 and "is not a private key" in r.err
        keys_dir = Path(cli.env["DLENV_STATE_DIR"]) / "keys"
        assert not (keys_dir / f"dlenv-{env}").exists()

        r = cli("ssh-key", "import", env, str(elsewhere))
        assert r.code == 0, r.err
        assert "stored in" in r.err
        stored = keys_dir / f"dlenv-{env}"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        r = cli("ssh-key", "import", env, str(elsewhere))
        assert r.code == 0 and "already holds this key" in r.err

        r = cli("ssh-key", "path", env)
        assert r.code == 0 and r.out.strip() == str(stored)

        r = cli("ssh-key", "list", "--json")
        assert r.code == 0, r.err
        [row] = [k for k in json.loads(r.out)["keys"] if k["name"] == env]
        assert row["state"] == "ok" and row["local"] == str(stored)

        r = cli("up", env, "--no-provision", "--yes")
        assert r.code == 0, r.err
        assert len(dlenv_resources("us-east-1", env, cli.endpoint)["instances"]) == 1
    finally:
        cli("down", env, "--yes")
        ec2.delete_key_pair(KeyName=f"dlenv-{env}")
