"""One SSH key pair per environment: generated locally (ed25519), public half imported to EC2.

The private key never leaves this machine and is never printed; it lives 0600 in dlenv's state
dir. A key pair that exists in EC2 while the private key is missing here is never deleted or
replaced, because that would lock out the machine that does hold it. `dlenv ssh-key import`
brings the private key over from the machine that has it, after proving it is the key EC2 holds.

How a local private key is matched with an EC2 key pair: DescribeKeyPairs returns the public key
itself (IncludePublicKey), which is compared with the local one. Where EC2 returns no public key,
the fingerprint EC2 reports is compared, computed the way AWS documents it (KeyPairInfo
keyFingerprint, and the EC2 user guide's "verify the fingerprint" commands):
- ED25519, imported or created by EC2: base64 of the SHA-256 of the public key (OpenSSH's
  `SHA256:` fingerprint; EC2 writes it with `=` padding and without the prefix);
- RSA imported: MD5 of the DER public key (`openssl pkey -pubout -outform DER | openssl md5 -c`;
  the API reference calls it the RFC 4716 MD5, which is the MD5 of the SSH key blob: both are
  accepted);
- RSA created by EC2: SHA-1 of the DER PKCS#8 private key (`openssl pkcs8 -topk8 -nocrypt
  -outform DER | openssl sha1 -c`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlenv.cloud.aws_errors import error_code, translated
from dlenv.cloud.session import Aws
from dlenv.config import REGION_RE
from dlenv.errors import NotFoundError, SshError, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
    from mypy_boto3_ec2.type_defs import TagTypeDef

Say = Callable[[str], None]


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
    public_line = f"{public} {comment}"
    _write_private(path, private, public_line)
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


def ec2_key_exists(aws: Aws, name: str) -> bool:
    import botocore.exceptions

    with translated(region=aws.region_name):
        try:
            aws.ec2.describe_key_pairs(KeyNames=[name])
            return True
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidKeyPair.NotFound":
                return False
            raise


def missing_key_error(env: str, region: str) -> SshError:
    """EC2 holds dlenv-ENV but this machine lacks its private key: say how to get it here."""
    return SshError(
        f"EC2 key pair {key_name(env)} exists in {region} but its private key is not on this "
        f"machine ({private_key_path(env)})",
        f"bring it over from the machine that launched {env!r} (`dlenv ssh-key path {env}` "
        f"there shows the file): `dlenv ssh-key import {env} FILE`, or remove the "
        f"environment: `dlenv down {env}`",
    )


def check_private_key(path: Path, say: Say | None = None) -> Path:
    """Make sure OpenSSH will accept the private key file at `path`, before anyone uses it.

    OpenSSH refuses a private key that group or others can read ("UNPROTECTED PRIVATE KEY
    FILE"), and says so only after the connection was made. A key with group/other access is
    fixed to 0600 with one line (`say`); one that cannot be fixed (another user's file, a
    read-only file system) is refused with a SshError naming the file and the fix.
    """
    import stat

    try:
        st = path.stat()
    except OSError as exc:
        raise SshError(
            f"private key {path} cannot be read ({exc.strerror or type(exc).__name__})",
            "check the file, or import the key again: `dlenv ssh-key import NAME FILE --force`",
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise SshError(
            f"private key {path} is not a regular file", "remove it or replace it with the key"
        )
    mode = stat.S_IMODE(st.st_mode)
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise SshError(
            f"private key {path} belongs to another user (uid {st.st_uid}); OpenSSH refuses it",
            "copy it to a file of your own and import that: `dlenv ssh-key import NAME FILE`",
        )
    if mode & 0o077:
        try:
            os.chmod(path, 0o600)
        except OSError as exc:
            raise SshError(
                f"private key {path} is readable by other users (mode {mode:o}) and cannot be "
                f"made private ({exc.strerror or type(exc).__name__})",
                f"make it private yourself: chmod 600 {shlex.quote(str(path))}",
            ) from None
        (say or _default_say)(
            f"private key {path} was accessible to other users (mode {mode:o}): "
            "made it 0600 (OpenSSH refuses such keys)"
        )
    return path


def _default_say(text: str) -> None:
    from dlenv.terminal import Terminal

    Terminal().warn(text)


def require_private_key(env: str, region: str, say: Say | None = None) -> Path:
    """The private key of ENV on this machine, or the error that says how to import it.

    For callers about to SSH into an existing environment (its key pair is in EC2 by then).
    A key that others can read is made 0600 first, with one line (see check_private_key).
    """
    path = private_key_path(env)
    if not path.is_file():
        raise missing_key_error(env, region)
    return check_private_key(path, say)


def ensure_key_pair(aws: Aws, env: str, tags: list[TagTypeDef], say: Say | None = None) -> KeyPair:
    """The environment's key pair, importing a new local key into EC2 when it has none.

    A Duplicate from ImportKeyPair means another dlenv (another machine) imported its own key
    between our check and our import: ConcurrentLaunchError, and the caller undoes its launch.
    """
    import botocore.exceptions

    from dlenv.cloud.launch import ConcurrentLaunchError

    name = key_name(env)
    path = private_key_path(env)
    in_ec2 = ec2_key_exists(aws, name)
    if in_ec2 and not path.is_file():
        # `up` gets here only when no instance has the name: the key pair is another machine's
        # launch in progress, or what one left behind. `down` would undo the former, so the
        # hint tells the two apart instead of offering it blindly.
        raise SshError(
            f"EC2 key pair {name} exists in {aws.region_name} with no instance named {env!r}, "
            f"and its private key is not on this machine ({path}): another machine is launching {env!r} "
            "right now, or a launch there left the key pair behind",
            f"if another machine is launching it, wait and then use it from there (or bring its "
            f"key here: `dlenv ssh-key import {env} FILE`); if it is a leftover, "
            f"`dlenv down {env}` removes it; nothing was created",
        )
    if not path.is_file():
        public = generate_local_key(path, comment=name)
    else:
        check_private_key(path, say)
        public = public_key_of(path)
    if in_ec2:
        return KeyPair(name, path, created_in_ec2=False)
    with translated(region=aws.region_name):
        try:
            aws.ec2.import_key_pair(
                KeyName=name,
                PublicKeyMaterial=public.encode(),
                TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags}],
            )
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidKeyPair.Duplicate":
                raise ConcurrentLaunchError(env, f"key pair {name} appeared") from exc
            raise
    return KeyPair(name, path, created_in_ec2=True)


def delete_key_pair(aws: Aws, env: str, *, keep_local: bool = False) -> bool:
    """Delete the EC2 key pair (and the local key unless keep_local). True if EC2 had it."""
    name = key_name(env)
    existed = ec2_key_exists(aws, name)
    if existed:
        with translated(region=aws.region_name):
            aws.ec2.delete_key_pair(KeyName=name)
    if not keep_local:
        delete_local_key(env)
    return existed


def delete_local_key(env: str) -> bool:
    """Remove ENV's private key, .pub and home-region record; True if the private key was there."""
    path = private_key_path(env)
    existed = path.is_file()
    for p in (path, path.with_suffix(".pub"), home_region_path(env)):
        p.unlink(missing_ok=True)
    return existed


# ---- which region's environment the local key belongs to -------------------------------------
# Names are per machine, not per region: `ssh dlenv-NAME`, the known_hosts alias and the key file
# name one host. The region of the environment a local key serves is recorded beside it, so that
# `up NAME` in a second region is refused while the first still exists (it would share the alias
# and the key), and `down NAME` in another region never deletes the key the first one needs.


def home_region_path(env: str) -> Path:
    return private_key_path(env).with_suffix(".region")


def home_region(env: str) -> str | None:
    """The region recorded for ENV's local key (None: not recorded, or unreadable/malformed)."""
    from dlenv.errors import StateFileError
    from dlenv.statefile import read_text

    try:
        text = read_text(home_region_path(env), what="key region record")
    except StateFileError:
        return None
    region = (text or "").strip()
    return region if REGION_RE.fullmatch(region) else None


def set_home_region(env: str, region: str) -> None:
    """Record that ENV's local key serves the environment in `region` (atomic, 0600)."""
    from dlenv.statefile import atomic_write

    if REGION_RE.fullmatch(region) and private_key_path(env).is_file():
        atomic_write(home_region_path(env), region + "\n", mode=0o600)


def key_pair_tags(aws: Aws, env: str) -> dict[str, str] | None:
    """The tags of EC2 key pair dlenv-ENV, or None when EC2 has no such key pair."""
    import botocore.exceptions

    with translated(region=aws.region_name):
        try:
            pairs = aws.ec2.describe_key_pairs(KeyNames=[key_name(env)])["KeyPairs"]
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidKeyPair.NotFound":
                return None
            raise
    if not pairs:
        return None
    return {t["Key"]: t["Value"] for t in pairs[0].get("Tags", [])}


# ---- importing a private key from another machine ---------------------------------------------

MAX_KEY_BYTES = 64 * 1024


@dataclass(frozen=True)
class LocalKey:
    """A private key read from a file, with what EC2 may report for it."""

    key: Ed25519PrivateKey | RSAPrivateKey
    key_type: str
    """ed25519 or rsa: the two types EC2 key pairs can have."""
    public: str
    """The OpenSSH public key line, without a comment."""

    @property
    def sha256(self) -> str:
        """OpenSSH's fingerprint, `SHA256:` + unpadded base64 (what `ssh-keygen -l` prints)."""
        return sha256_fingerprint(self.public)

    def _rsa_digests(self) -> dict[str, str]:
        """RSA: imported (MD5 of the DER public key; MD5 of the SSH blob per RFC 4716) and
        created by EC2 (SHA-1 of the DER PKCS#8 private key)."""
        import hashlib

        from cryptography.hazmat.primitives import serialization

        der_public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        der_private = self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "md5": _colon_hex(hashlib.md5(der_public, usedforsecurity=False).digest()),
            "md5-rfc4716": _colon_hex(
                hashlib.md5(_blob(self.public), usedforsecurity=False).digest()
            ),
            "sha1": _colon_hex(hashlib.sha1(der_private, usedforsecurity=False).digest()),
        }

    def ec2_fingerprints(self) -> set[str]:
        """Every fingerprint EC2 can report for this key, normalised (see the module doc)."""
        found = {_norm(self.sha256)}
        if self.key_type == "rsa":
            found |= set(self._rsa_digests().values())
        return found

    def fingerprint_like(self, ec2_key: Ec2Key) -> str:
        """This key's fingerprint in the form EC2 shows for `ec2_key`, for a side-by-side."""
        if ec2_key.public or self.key_type != "rsa" or ":" not in ec2_key.fingerprint:
            return self.sha256
        digests = self._rsa_digests()
        if len(ec2_key.fingerprint.split(":")) == 20:  # SHA-1: a key pair EC2 created
            return f"{digests['sha1']} (SHA-1 of the private key)"
        return f"{digests['md5']} (MD5 of the public key)"

    def openssh_private(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class Ec2Key:
    name: str
    key_type: str
    fingerprint: str
    public: str | None
    """The public key EC2 holds (DescribeKeyPairs IncludePublicKey), when it returns one."""

    def matches(self, local: LocalKey) -> bool:
        if self.public:
            return _blob(self.public) == _blob(local.public)
        return _norm(self.fingerprint) in local.ec2_fingerprints()

    def shown_fingerprint(self) -> str:
        if self.public:
            return sha256_fingerprint(self.public)
        if ":" in self.fingerprint:
            return self.fingerprint
        return "SHA256:" + _norm(self.fingerprint)


@dataclass(frozen=True)
class ImportResult:
    path: Path
    fingerprint: str
    changed: bool
    """False when the same key was already there (nothing written)."""


def sha256_fingerprint(public_line: str) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(_blob(public_line)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _blob(public_line: str) -> bytes:
    import base64
    import binascii

    parts = public_line.split()
    try:
        return base64.b64decode(parts[1], validate=True)
    except (IndexError, binascii.Error):
        return public_line.encode()


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


def _norm(fingerprint: str) -> str:
    """One spelling per fingerprint: no `SHA256:`/`MD5:` prefix, no padding, hex lowercased."""
    fp = fingerprint.strip()
    for prefix in ("SHA256:", "MD5:", "SHA1:"):
        fp = fp.removeprefix(prefix)
    fp = fp.rstrip("=")
    if all(c in "0123456789abcdefABCDEF:" for c in fp) and ":" in fp:
        fp = fp.lower()
    return fp


def read_private_key(path: Path) -> LocalKey:
    """Load an unencrypted OpenSSH or PEM private key of a type EC2 accepts; UsageError else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    fix = "give the private key file (OpenSSH or PEM) of the environment's key pair"
    try:
        if path.stat().st_size > MAX_KEY_BYTES:
            raise UsageError(f"{path} is not a private key (it is larger than any key)", fix)
        data = path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a private key file", fix) from None
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", fix) from None
    except PermissionError:
        raise UsageError(f"{path} is not readable (permission denied)", fix) from None
    text = data.lstrip()
    if text.startswith((b"ssh-", b"ecdsa-")):
        raise UsageError(
            f"{path} is a public key", "give the private key: the same file name without .pub"
        )
    key: PrivateKeyTypes | None = None
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        elif b"-----BEGIN" in data and b"PRIVATE KEY-----" in data:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying "encrypted, and no password was given"
        raise UsageError(
            f"{path} is protected by a passphrase, and dlenv's keys have none (dlenv connects "
            "without asking)",
            f"import a copy without the passphrase: cp {path} COPY && ssh-keygen -p -N '' -f COPY",
        ) from None
    except Exception as exc:  # malformed: ValueError, UnsupportedAlgorithm, ...
        raise UsageError(
            f"{path} is not a readable private key ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'malformed'})",
            fix,
        ) from None
    if key is None:
        raise UsageError(f"{path} is not a private key (no OpenSSH or PEM private key in it)", fix)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        key_type = "ed25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        key_type = "rsa"
    else:
        raise UsageError(
            f"{path} holds a key of type "
            f"{type(key).__name__.removeprefix('_').replace('PrivateKey', '')}, "
            "and EC2 key pairs are ED25519 or RSA",
            fix,
        )
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return LocalKey(key=key, key_type=key_type, public=public)


def describe_ec2_keys(aws: Aws, names: list[str] | None = None) -> list[Ec2Key]:
    """EC2 key pairs by name, or all whose name starts with `dlenv-` (one call)."""
    import botocore.exceptions

    kwargs: dict[str, Any] = {"IncludePublicKey": True}
    if names is not None:
        kwargs["KeyNames"] = names
    else:
        kwargs["Filters"] = [{"Name": "key-name", "Values": [key_name("*")]}]
    with translated(region=aws.region_name):
        try:
            pairs = aws.ec2.describe_key_pairs(**kwargs).get("KeyPairs", [])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidKeyPair.NotFound":
                return []
            raise
    return [
        Ec2Key(
            name=p["KeyName"],
            key_type=p.get("KeyType", "rsa"),
            fingerprint=p.get("KeyFingerprint", ""),
            public=(p.get("PublicKey") or "").strip() or None,
        )
        for p in pairs
        if names is not None or p["KeyName"].startswith(key_name(""))
    ]


def _write_private(path: Path, data: bytes, public_line: str) -> None:
    """Write key + .pub, each atomically (`statefile.atomic_write`), the private key 0600."""
    from dlenv.statefile import atomic_write

    atomic_write(path, data, mode=0o600)
    atomic_write(path.with_suffix(".pub"), public_line + "\n", mode=0o644)


def import_private_key(aws: Aws, env: str, file: Path, *, force: bool = False) -> ImportResult:
    """Install FILE as ENV's private key after proving it is the key of EC2 key pair dlenv-ENV.

    Nothing is written unless every check passes; the same key already in place is a no-op; a
    different local key is replaced only with `force` (and only by the key EC2 holds).
    """
    name = key_name(env)
    local = read_private_key(Path(file).expanduser())
    found = describe_ec2_keys(aws, [name])
    if not found:
        raise NotFoundError(
            f"no EC2 key pair {name} in {aws.region_name}: there is nothing to import the key for",
            f"check the region (--region) with `dlenv ssh-key list`; `dlenv up {env}` makes a "
            "new key pair",
        )
    ec2_key = found[0]
    if not ec2_key.matches(local):
        raise UsageError(
            f"{file} does not match EC2 key pair {name} in {aws.region_name}: the file's key is "
            f"{local.fingerprint_like(ec2_key)}, EC2's is {ec2_key.shown_fingerprint()}",
            f"give the private key of environment {env!r} (on the machine that launched it: "
            f"`dlenv ssh-key path {env}`)",
        )
    path = private_key_path(env)
    if path.is_file():
        try:
            existing = read_private_key(path)
        except UsageError:
            existing = None
        if existing is not None and _blob(existing.public) == _blob(local.public):
            os.chmod(path, 0o600)
            if not path.with_suffix(".pub").is_file():
                path.with_suffix(".pub").write_text(f"{local.public} {name}\n")
            if home_region(env) is None:
                set_home_region(env, aws.region_name)
            return ImportResult(path, local.sha256, changed=False)
        if not force:
            what = existing.sha256 if existing is not None else "an unreadable file"
            raise UsageError(
                f"{path} already holds a different key ({what}) for {env!r}",
                "pass --force to replace it with the key EC2 holds",
            )
    _write_private(path, local.openssh_private(), f"{local.public} {name}")
    set_home_region(env, aws.region_name)
    return ImportResult(path, local.sha256, changed=True)


@dataclass(frozen=True)
class KeyStatus:
    env: str
    key_name: str
    local: Path | None
    remote: Ec2Key | None
    """The key pair EC2 holds under `key_name` (None: none there)."""
    match: bool | None
    """Whether the local key is EC2's (None when one side is missing or cannot be read)."""

    @property
    def state(self) -> str:
        if self.local and self.remote:
            return {True: "ok", False: "different keys", None: "local key unreadable"}[self.match]
        if self.remote:
            return "not on this machine"
        return "not in EC2"

    @property
    def hint(self) -> str:
        if self.state == "not on this machine":
            return f"dlenv ssh-key import {self.env} FILE"
        if self.state == "not in EC2":
            return f"dlenv up {self.env} imports it"
        if self.state in {"different keys", "local key unreadable"}:
            return f"dlenv ssh-key import {self.env} FILE --force"
        return ""


def list_keys(aws: Aws) -> list[KeyStatus]:
    """Every dlenv key, here and in the session's region, with whether the two are the same."""
    from dlenv.paths import keys_dir

    prefix = key_name("")
    local = {
        p.name.removeprefix(prefix): p
        for p in keys_dir().glob(f"{prefix}*")
        if p.is_file() and not p.name.endswith((".pub", ".tmp", ".region"))
    }
    remote = {k.name.removeprefix(prefix): k for k in describe_ec2_keys(aws)}
    rows = []
    for env in sorted(set(local) | set(remote)):
        path, ec2_key = local.get(env), remote.get(env)
        match = None
        if path and ec2_key:
            try:
                match = ec2_key.matches(read_private_key(path))
            except UsageError:
                match = None
        rows.append(KeyStatus(env, key_name(env), path, ec2_key, match))
    return rows
