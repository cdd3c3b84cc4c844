"""`dlenv ssh-key import`: bringing an environment's private key from the machine that has it.

moto (5.x) returns the public key with DescribeKeyPairs(IncludePublicKey=True), which is what the
import compares first. Its fingerprints follow AWS for imported RSA keys (MD5 of the DER public
key) but not for ED25519 (moto: colon-hex SHA-256; AWS: base64 SHA-256) nor for RSA keys it
creates, so the fingerprint rules are checked against the commands AWS's user guide gives
(ssh-keygen / openssl) instead of against moto.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from awsfake import dlenv_resources
from dlenv.cloud import keys
from dlenv.errors import NotFoundError, SshError, UsageError
from dlenv.ops.up import up

TAGS = [{"Key": "dlenv:name", "Value": "box"}]
NEEDS_SSH_KEYGEN = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen")


def _launched_elsewhere(aws, tmp_path, env: str = "box") -> Path:
    """EC2 key pair dlenv-ENV exists; its private key lives only on "the other machine"."""
    kp = keys.ensure_key_pair(aws, env, TAGS)
    other = tmp_path / "other-machine"
    other.mkdir(exist_ok=True)
    moved = other / kp.private_key.name
    shutil.move(kp.private_key, moved)
    kp.private_key.with_suffix(".pub").unlink()
    return moved


def _keygen(path: Path, kind: str = "ed25519", passphrase: str = "", pem: bool = False) -> Path:
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "test", "-f", str(path)]
    if kind == "rsa":
        argv[4:4] = ["-b", "2048"]
    if pem:
        argv += ["-m", "PEM"]
    subprocess.run(argv, check=True, capture_output=True)
    return path


def _one_line(err: Exception) -> None:
    assert "\n" not in err.message and (err.hint is None or "\n" not in err.hint)


# ---- `up` with the key pair in EC2 and no private key here ------------------------------------


def test_up_without_the_local_key_names_import_and_down_and_changes_nothing(
    aws, settings, terminal, tmp_path
):
    _launched_elsewhere(aws, tmp_path)
    before = aws.ec2.describe_key_pairs(KeyNames=["dlenv-box"])["KeyPairs"][0]
    with pytest.raises(SshError) as err:
        up("box", settings, terminal, yes=True, wait_ssh=False)
    _one_line(err.value)
    assert "its private key is not on this machine" in err.value.message
    # no instance has the name: another machine may be launching it right now, so `down` is
    # offered only for a leftover, next to waiting and importing
    assert "another machine is launching 'box' right now" in err.value.message
    assert "`dlenv ssh-key import box FILE`" in err.value.hint
    assert "if it is a leftover, `dlenv down box` removes it" in err.value.hint
    assert "nothing was created" in err.value.hint
    left = dlenv_resources("us-east-1", "box")
    assert left["instances"] == [] and left["security_groups"] == []
    after = aws.ec2.describe_key_pairs(KeyNames=["dlenv-box"])["KeyPairs"][0]
    assert after["KeyPairId"] == before["KeyPairId"]  # never replaced
    assert not keys.private_key_path("box").exists()  # and no new local key was made up


def test_require_private_key_gives_the_same_error(aws, tmp_path):
    _launched_elsewhere(aws, tmp_path)
    with pytest.raises(SshError) as err:
        keys.require_private_key("box", "us-east-1")
    assert "dlenv ssh-key import box FILE" in err.value.hint


# ---- import --------------------------------------------------------------------------------


def test_import_of_the_right_key_then_up_proceeds(aws, settings, terminal, tmp_path):
    original = _launched_elsewhere(aws, tmp_path)
    result = keys.import_private_key(aws, "box", original)
    path = keys.private_key_path("box")
    assert result.changed and result.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keys.read_private_key(path).public == keys.read_private_key(original).public
    assert path.with_suffix(".pub").read_text().startswith("ssh-ed25519 ")
    assert result.fingerprint == keys.read_private_key(original).sha256
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    # the same key again: nothing to do, nothing rewritten
    mtime = path.stat().st_mtime_ns
    assert not keys.import_private_key(aws, "box", original).changed
    assert path.stat().st_mtime_ns == mtime
    # `up` now finds the key and uses the key pair EC2 has
    kp = keys.ensure_key_pair(aws, "box", TAGS)
    assert not kp.created_in_ec2 and kp.private_key == path
    result = up("box", settings, terminal, yes=True, wait_ssh=False)
    assert result.action == "launched"
    inst = aws.ec2.describe_instances(InstanceIds=[result.env.instance_id])["Reservations"][0]
    assert inst["Instances"][0]["KeyName"] == "dlenv-box"
    assert keys.require_private_key("box", "us-east-1") == path


def test_import_of_the_wrong_key_is_refused_naming_both_fingerprints(aws, tmp_path):
    original = _launched_elsewhere(aws, tmp_path)
    wrong = tmp_path / "wrong"
    keys.generate_local_key(wrong, "someone-else")
    with pytest.raises(UsageError) as err:
        keys.import_private_key(aws, "box", wrong)
    _one_line(err.value)
    msg = err.value.message
    assert "does not match EC2 key pair dlenv-box in us-east-1" in msg
    assert keys.read_private_key(wrong).sha256 in msg
    assert keys.read_private_key(original).sha256 in msg  # EC2's, from the public key it holds
    assert err.value.exit_code == 2
    assert list(keys.private_key_path("box").parent.iterdir()) == []  # nothing written


def test_a_different_local_key_is_replaced_only_with_force(aws, tmp_path):
    original = _launched_elsewhere(aws, tmp_path)
    stale = keys.private_key_path("box")
    keys.generate_local_key(stale, "stale")
    stale_text = stale.read_text()
    with pytest.raises(UsageError) as err:
        keys.import_private_key(aws, "box", original)
    _one_line(err.value)
    assert "already holds a different key" in err.value.message and "--force" in err.value.hint
    assert stale.read_text() == stale_text
    assert keys.import_private_key(aws, "box", original, force=True).changed
    assert keys.read_private_key(stale).public == keys.read_private_key(original).public
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600


def test_import_needs_the_ec2_key_pair(aws, tmp_path):
    key = tmp_path / "k"
    keys.generate_local_key(key, "k")
    with pytest.raises(NotFoundError) as err:
        keys.import_private_key(aws, "ghost", key)
    _one_line(err.value)
    assert "no EC2 key pair dlenv-ghost in us-east-1" in err.value.message
    assert not keys.private_key_path("ghost").exists()


@NEEDS_SSH_KEYGEN
def test_an_rsa_pem_key_of_a_key_pair_ec2_created_is_imported(aws, tmp_path):
    """Key pairs made with CreateKeyPair hand out an RSA key in PEM: dlenv takes those too."""
    material = aws.ec2.create_key_pair(KeyName="dlenv-legacy")["KeyMaterial"]
    pem = tmp_path / "legacy.pem"
    pem.write_text(material)
    result = keys.import_private_key(aws, "legacy", pem)
    stored = keys.private_key_path("legacy")
    assert result.changed and stored.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    # OpenSSH reads the stored key and derives the same public key EC2 holds
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(stored)], capture_output=True, text=True, check=True
    ).stdout.split()[:2]
    ec2 = aws.ec2.describe_key_pairs(KeyNames=["dlenv-legacy"], IncludePublicKey=True)
    assert derived == ec2["KeyPairs"][0]["PublicKey"].split()[:2]


# ---- files that are not a usable private key --------------------------------------------------


@NEEDS_SSH_KEYGEN
@pytest.mark.parametrize("pem", [False, True])
def test_passphrase_protected_key_is_refused_in_one_line(aws, tmp_path, pem):
    original = _launched_elsewhere(aws, tmp_path)
    locked = tmp_path / "locked"
    shutil.copy(original, locked)
    if pem:
        locked.unlink()
        _keygen(locked, "rsa", passphrase="secret-passphrase", pem=True)
    else:
        subprocess.run(
            ["ssh-keygen", "-q", "-p", "-N", "secret-passphrase", "-f", str(locked)],
            check=True,
            capture_output=True,
        )
    with pytest.raises(UsageError) as err:
        keys.import_private_key(aws, "box", locked)
    _one_line(err.value)
    assert "is protected by a passphrase" in err.value.message
    assert "ssh-keygen -p -N '' -f COPY" in err.value.hint
    assert not keys.private_key_path("box").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"hello, I am not a key\n", "is not a private key (no OpenSSH or PEM private key in it)"),
        (b"", "is not a private key"),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAgarbage\n-----END OPENSSH PRIVATE KEY-----\n",
            "is not a readable private key",
        ),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "is not a private key"),
    ],
)
def test_not_a_key_is_refused_in_one_line(aws, tmp_path, content, expected):
    _launched_elsewhere(aws, tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    with pytest.raises(UsageError) as err:
        keys.import_private_key(aws, "box", bad)
    _one_line(err.value)
    assert expected in err.value.message and str(bad) in err.value.message
    assert not keys.private_key_path("box").exists()


def test_public_key_or_missing_file_or_directory_is_named(aws, tmp_path):
    original = _launched_elsewhere(aws, tmp_path)
    pub = tmp_path / "box.pub"
    pub.write_text(keys.read_private_key(original).public + " box\n")
    cases = {pub: "is a public key", tmp_path / "nope": "does not exist", tmp_path: "directory"}
    for path, expected in cases.items():
        with pytest.raises(UsageError) as err:
            keys.import_private_key(aws, "box", path)
        _one_line(err.value)
        assert expected in err.value.message


@NEEDS_SSH_KEYGEN
def test_an_ecdsa_key_is_refused(aws, tmp_path):
    _launched_elsewhere(aws, tmp_path)
    ec = _keygen(tmp_path / "ec", "ecdsa")
    with pytest.raises(UsageError) as err:
        keys.import_private_key(aws, "box", ec)
    assert "EC2 key pairs are ED25519 or RSA" in err.value.message


# ---- the fingerprint rules AWS documents, when EC2 returns no public key ----------------------


def _cmd(shell: str) -> str:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, check=True
    ).stdout.strip()


@NEEDS_SSH_KEYGEN
def test_ed25519_fingerprint_is_openssh_sha256_as_ec2_writes_it(tmp_path):
    key = _keygen(tmp_path / "ed")
    local = keys.read_private_key(key)
    # `ssh-keygen -l -E sha256`: "256 SHA256:<base64 without padding> comment (ED25519)"
    openssh = _cmd(f"ssh-keygen -l -E sha256 -f {key}").split()[1]
    assert local.sha256 == openssh
    ec2_style = openssh.removeprefix("SHA256:") + "="  # EC2: base64 with padding, no prefix
    assert keys.Ec2Key("dlenv-x", "ed25519", ec2_style, None).matches(local)
    other = keys.read_private_key(_keygen(tmp_path / "ed2"))
    assert not keys.Ec2Key("dlenv-x", "ed25519", ec2_style, None).matches(other)
    assert keys.Ec2Key("dlenv-x", "ed25519", ec2_style, None).shown_fingerprint() == openssh


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
@NEEDS_SSH_KEYGEN
def test_rsa_fingerprints_are_the_ones_the_ec2_user_guide_computes(tmp_path):
    key = _keygen(tmp_path / "rsa", "rsa", pem=True)
    local = keys.read_private_key(key)
    # imported key pair: MD5 of the DER public key
    imported = _cmd(f"openssl pkey -in {key} -pubout -outform DER | openssl md5 -c").split()[-1]
    # key pair created by EC2: SHA-1 of the DER PKCS#8 private key
    created = _cmd(
        f"openssl pkcs8 -in {key} -inform PEM -outform DER -topk8 -nocrypt | openssl sha1 -c"
    ).split()[-1]
    for fingerprint, length in ((imported, 16), (created, 20)):
        assert len(fingerprint.split(":")) == length
        ec2_key = keys.Ec2Key("dlenv-x", "rsa", fingerprint.upper(), None)
        assert ec2_key.matches(local)
        assert local.fingerprint_like(ec2_key).startswith(fingerprint)
    other = keys.read_private_key(_keygen(tmp_path / "rsa2", "rsa"))
    assert not keys.Ec2Key("dlenv-x", "rsa", imported, None).matches(other)


@NEEDS_SSH_KEYGEN
def test_moto_imported_rsa_fingerprint_follows_aws(aws, tmp_path):
    key = _keygen(tmp_path / "rsa", "rsa")
    local = keys.read_private_key(key)
    aws.ec2.import_key_pair(KeyName="dlenv-r", PublicKeyMaterial=local.public.encode())
    reported = aws.ec2.describe_key_pairs(KeyNames=["dlenv-r"])["KeyPairs"][0]["KeyFingerprint"]
    assert keys.Ec2Key("dlenv-r", "rsa", reported, None).matches(local)


def test_wrong_key_message_without_public_key_shows_ec2s_own_fingerprint(
    aws, tmp_path, monkeypatch
):
    """Where EC2 returns no public key, the message compares like with like."""
    _launched_elsewhere(aws, tmp_path)
    wrong = tmp_path / "wrong"
    keys.generate_local_key(wrong, "x")
    real = keys.describe_ec2_keys(aws, ["dlenv-box"])[0]
    ec2_style = keys.Ec2Key(real.name, "ed25519", real.shown_fingerprint()[7:] + "=", None)
    monkeypatch.setattr(keys, "describe_ec2_keys", lambda aws, names=None: [ec2_style])
    with pytest.raises(UsageError) as err:
        keys.import_private_key(aws, "box", wrong)
    assert real.shown_fingerprint() in err.value.message
    assert keys.read_private_key(wrong).sha256 in err.value.message


# ---- path and list -----------------------------------------------------------------------------


def test_list_shows_which_side_lacks_a_key(aws, tmp_path):
    _launched_elsewhere(aws, tmp_path, "away")  # EC2 only
    keys.ensure_key_pair(aws, "both", TAGS)  # both, same key
    keys.generate_local_key(keys.private_key_path("local"), "dlenv-local")  # here only
    keys.ensure_key_pair(aws, "mixed", TAGS)
    keys.generate_local_key(keys.private_key_path("mixed"), "other")  # both, different keys
    aws.ec2.create_key_pair(KeyName="not-dlenv")
    rows = {r.env: (r.state, r.hint) for r in keys.list_keys(aws)}
    assert rows == {
        "away": ("not on this machine", "dlenv ssh-key import away FILE"),
        "both": ("ok", ""),
        "local": ("not in EC2", "dlenv up local imports it"),
        "mixed": ("different keys", "dlenv ssh-key import mixed FILE --force"),
    }
