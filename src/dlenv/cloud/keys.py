"""One SSH key pair per environment: generated locally (ed25519), public half imported to EC2.

The private key never leaves this machine and is never printed; it lives 0600 in dlenv's state
dir. A key pair that exists in EC2 while the private key is missing here is never deleted or
replaced, because that would lock out the machine that does hold it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlenv.cloud.aws_errors import error_code, translated
from dlenv.errors import SshError


@dataclass(frozen=True)
class KeyPair:
    name: str
    private_key: Path
    created_in_ec2: bool


def key_name(env: str) -> str:
    return f"dlenv-{env}"


def private_key_path(env: str) -> Path:
    from dlenv.paths import keys_dir

    return keys_dir() / key_name(env)


def generate_local_key(path: Path, comment: str) -> str:
    """Write a new ed25519 private key (0600, atomically) and return the OpenSSH public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    os.replace(tmp, path)
    public_line = f"{public} {comment}"
    path.with_suffix(".pub").write_text(public_line + "\n")
    return public_line


def public_key_of(path: Path) -> str:
    pub = path.with_suffix(".pub")
    if pub.is_file():
        return pub.read_text().strip()
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def ec2_key_exists(aws: Any, name: str) -> bool:
    import botocore.exceptions

    with translated(region=aws.region_name):
        try:
            aws.ec2.describe_key_pairs(KeyNames=[name])
            return True
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidKeyPair.NotFound":
                return False
            raise


def ensure_key_pair(aws: Any, env: str, tags: list[dict[str, str]]) -> KeyPair:
    name = key_name(env)
    path = private_key_path(env)
    in_ec2 = ec2_key_exists(aws, name)
    if in_ec2 and not path.is_file():
        raise SshError(
            f"EC2 key pair {name} exists in {aws.region_name} but its private key is not on this "
            f"machine ({path})",
            f"copy the private key from the machine that launched {env!r} to {path} (chmod 600), "
            f"or remove the environment with `dlenv down {env}`",
        )
    if not path.is_file():
        public = generate_local_key(path, comment=name)
    else:
        os.chmod(path, 0o600)
        public = public_key_of(path)
    if in_ec2:
        return KeyPair(name, path, created_in_ec2=False)
    with translated(region=aws.region_name):
        aws.ec2.import_key_pair(
            KeyName=name,
            PublicKeyMaterial=public.encode(),
            TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags}],
        )
    return KeyPair(name, path, created_in_ec2=True)


def delete_key_pair(aws: Any, env: str, *, keep_local: bool = False) -> bool:
    """Delete the EC2 key pair (and the local key unless keep_local). True if EC2 had it."""
    name = key_name(env)
    existed = ec2_key_exists(aws, name)
    if existed:
        with translated(region=aws.region_name):
            aws.ec2.delete_key_pair(KeyName=name)
    if not keep_local:
        path = private_key_path(env)
        for p in (path, path.with_suffix(".pub")):
            p.unlink(missing_ok=True)
    return existed
