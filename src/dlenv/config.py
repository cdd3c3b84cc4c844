"""Settings with one precedence: defaults < dlenv.toml (user, then project) < environment < flags.

Every setting is declared once in `SETTINGS` (name, type, default, help); the environment
variable is always `DLENV_<NAME>` and `--help` shows it. AWS's own variables (`AWS_PROFILE`,
`AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`) keep the meaning boto3 gives them.

A project `dlenv.toml` (found in the working directory or a parent: a cloned repository's) is
*untrusted*: it may set preferences, but settings that run commands on this machine or widen who
can reach an instance (`NEEDS_TRUST`) are ignored, with one notice, until the user trusts that
exact file content with `dlenv config trust` (its sha256 is recorded in the user config dir; an
edited file must be trusted again). The user's own config, the environment and flags are the
user's own words and always apply.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dlenv.errors import ConfigError, StateFileError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class Settings:
    """Resolved settings. Field metadata holds the help text shown by `dlenv config`."""

    region: str | None = field(default=None, metadata={"help": "AWS region"})
    profile: str | None = field(default=None, metadata={"help": "AWS profile"})
    instance: str = field(default="g4dn.xlarge", metadata={"help": "EC2 instance type"})
    ami: str = field(
        default="ubuntu-24.04",
        metadata={"help": "ubuntu-24.04, ubuntu-22.04, debian-12 or ami-..."},
    )
    baked: bool = field(
        default=True,
        metadata={"help": "launch from the newest matching image of `dlenv ami bake` if any"},
    )
    disk: int = field(default=100, metadata={"help": "root volume size in GB (gp3, encrypted)"})
    spot: bool = field(default=False, metadata={"help": "launch spot instances"})
    spot_type: str = field(
        default="persistent", metadata={"help": "one-time or persistent (stop on interruption)"}
    )
    spot_fallback: str = field(
        default="none", metadata={"help": "on-demand: fall back when spot has no capacity"}
    )
    allow_cidr: str | None = field(
        default=None, metadata={"help": "CIDR allowed to SSH (default: your IP /32)"}
    )
    ssh_user: str | None = field(
        default=None, metadata={"help": "login user (default from the AMI)"}
    )
    ssh_proxy_command: str | None = field(
        default=None, metadata={"help": "ProxyCommand for SSH (SSM, bastion); %h %p %r expand"}
    )
    ssh_timeout: int = field(default=600, metadata={"help": "seconds to wait for SSH after launch"})
    idle_stop: int = field(
        default=60, metadata={"help": "minutes idle before auto-stop (0 disables)"}
    )
    budget: float | None = field(
        default=None,
        metadata={"help": "US dollars an environment may cost from `up` before it stops itself"},
    )
    python: str = field(default="conda", metadata={"help": "python manager: conda or uv"})
    requirements: str | None = field(
        default=None,
        metadata={"help": "pip requirements file installed into the env (relative to dlenv.toml)"},
    )
    conda_env: str | None = field(
        default=None,
        metadata={"help": "conda environment.yml merged into the env (relative to dlenv.toml)"},
    )
    packages: list[str] = field(
        default_factory=list,
        metadata={"help": "packages installed into the env (env var: comma-separated)"},
    )
    frameworks: list[str] = field(
        default_factory=list,
        metadata={
            "help": "more frameworks as their own kernels: tensorflow, jax (env var: comma-separated)"
        },
    )
    ip_check_url: str = field(
        default="https://checkip.amazonaws.com",
        metadata={"help": "where the caller's public IP is detected"},
    )
    sources: dict[str, str] = field(default_factory=dict, metadata={"internal": True})
    notices: list[str] = field(default_factory=list, metadata={"internal": True})
    """One line per untrusted project file whose risky settings were ignored (the CLI prints
    each once); library callers may show or log them as they like."""

    def as_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get("internal")
        }


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings) if not f.metadata.get("internal")]


# -- what an untrusted project dlenv.toml may not set -------------------------------------------
NEEDS_TRUST: dict[str, str] = {
    "ssh_proxy_command": "it is a command dlenv runs on this machine at every SSH connection",
    "allow_cidr": "it decides who may reach SSH on your instances (0.0.0.0/0: the internet)",
    "ip_check_url": (
        "its answer becomes the address SSH is opened to, and it learns your public IP"
    ),
    "profile": ("it picks which of your AWS credentials (and so which account) dlenv acts with"),
    "ami": "an ami-... id boots an image from any account (a backdoored one, say) with your data",
    "requirements": "it installs packages (code that runs in your notebooks) from an index",
    "conda_env": "it installs packages (code that runs in your notebooks) from conda channels",
    "packages": "it installs packages (code that runs in your notebooks) from an index",
}
"""Settings a project dlenv.toml may set only once trusted, each with the reason why.

Everything else is a preference whose worst case is visible and bounded: the instance type, spot
choices and disk size are shown with their price before anything launches (`up` asks), region
and python manager only move or shape what you asked for, idle_stop/ssh_timeout are timers,
and ssh_user is strictly validated (a user name, so it cannot smuggle ssh options); frameworks
only picks among the stack's own pinned builds (provision/stack.toml), like python. For `ami`
only an explicit `ami-...` id needs trust; the named distros (ubuntu-24.04, ...) resolve to the
distribution's own published images and stay allowed.
"""


def needs_trust(name: str, value: Any) -> str | None:
    """Why an untrusted project file may not set `name` to `value` (None: it may)."""
    if name == "ami":
        return NEEDS_TRUST["ami"] if str(value).strip().startswith("ami-") else None
    return NEEDS_TRUST.get(name)


# -- validation of values that reach AWS, files or a shell -------------------------------------
REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d", re.ASCII)
"""An AWS region name (us-east-1, ap-southeast-2); also the key-region record's format."""
_PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+=,:/-]{0,127}", re.ASCII)
_INSTANCE = re.compile(r"[a-z][a-z0-9-]{0,24}\.[a-z0-9-]{1,24}", re.ASCII)
_AMI = re.compile(
    r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})|[a-z][a-z0-9]{1,20}-[0-9][0-9.]{0,10}", re.ASCII
)
LOGIN_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}", re.ASCII)
"""A login user name (flags, config, the dlenv:user tag); `dlenv.ssh.target` checks with it too."""
_URL = re.compile(r"https?://[!-~]+", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_IDLE_MINUTES = 7 * 24 * 60
_MAX_SSH_TIMEOUT = 24 * 3600


PATH_SETTINGS = ("requirements", "conda_env")
"""Files named in a dlenv.toml are relative to that file's folder (a project's requirements)."""

CHOICES: dict[str, tuple[str, ...]] = {
    "python": ("conda", "uv"),
    "spot_type": ("one-time", "persistent"),
    "spot_fallback": ("none", "on-demand"),
}


def declared_kind(name: str) -> type:
    """The base type a setting is declared with (`int | None` -> int, `list[str]` -> list).

    Read from the dataclass's resolved annotations (`typing.get_type_hints`), never from their
    text, so a renamed or reworded annotation cannot silently change how a value is parsed.
    """
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        hint, origin = args[0], typing.get_origin(args[0])
    base = origin or hint
    if not isinstance(base, type):  # pragma: no cover - a new setting with an exotic type
        raise TypeError(f"setting {name} has no plain declared type: {hint!r}")
    return base


def coerce(name: str, raw: Any, origin: str) -> Any:
    """`raw` (from a file, the environment, a flag or an EC2 tag) as setting `name`'s type.

    `origin` names where it came from, for the one-line error (ConfigError) naming the fix.
    """
    kind = declared_kind(name)
    try:
        if kind is list:
            if isinstance(raw, str):  # DLENV_PACKAGES="tqdm, rich==13.7"
                return [p.strip() for p in raw.split(",") if p.strip()]
            if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
                raise ConfigError(
                    f"{origin}: {name} = {raw!r} is not a list of strings", _fix(name, origin)
                )
            return list(raw)
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is float:
            if raw is None:
                return None
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                raise ValueError(raw)
            return float(raw)
        if kind is int:
            if isinstance(raw, (bool, float)) or not isinstance(raw, (int, str)):
                raise ValueError(raw)  # 5.7 or [5] is a mistake, never silently truncated
            return int(raw)
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise ConfigError(f"{origin}: {name} = {raw!r} is not a string", _fix(name, origin))
        if name in CHOICES and raw not in CHOICES[name]:
            # checked here, not only in _validate: values recorded in EC2 tags come through
            # coerce alone (lifecycle.with_env_choices), and a tag is anyone's to write
            allowed = " or ".join(CHOICES[name])
            raise ConfigError(
                f"{origin}: {name} = {raw!r} is not {allowed}",
                f"use {allowed} ({_fix(name, origin)})",
            )
        return raw
    except ValueError:
        expected = "true/false" if kind is bool else "a number" if kind is float else "an integer"
        raise ConfigError(
            f"{origin}: {name} = {raw!r} is not {expected}", _fix(name, origin)
        ) from None


_HINTS: dict[str, Any] = typing.get_type_hints(Settings)


def _fix(name: str, origin: str) -> str:
    return f"fix {name} in {origin}" if not origin.startswith("--") else f"fix {origin}"


# -- config files and their trust ----------------------------------------------------------------
@dataclass(frozen=True)
class ConfigFile:
    """One dlenv.toml that applies: the user's own, or a project's with its trust state."""

    path: Path
    scope: str  # "user" | "project"
    trust: str  # "user" (always applies) | "trusted" | "untrusted" | "changed"
    sha256: str | None = None


def user_config_file() -> Path:
    from dlenv.paths import config_dir

    return config_dir() / "dlenv.toml"


def project_file(start: Path | None = None) -> Path | None:
    """The nearest dlenv.toml in `start` (default: the working directory) or a parent."""
    here = Path.cwd() if start is None else start
    user = user_config_file()
    for directory in (here, *here.parents):
        candidate = directory / "dlenv.toml"
        if candidate.is_file():
            return None if _same(candidate, user) else candidate
    return None


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def config_files() -> list[Path]:
    """dlenv.toml files that apply, lowest precedence first: user config, then project."""
    found = []
    user = user_config_file()
    if user.is_file():
        found.append(user)
    project = project_file()
    if project is not None:
        found.append(project)
    return found


def trust_store_path() -> Path:
    """Where trusted project files are recorded: path -> sha256, in the user config dir."""
    from dlenv.paths import config_dir

    return config_dir() / "trusted-projects.json"


def _trust_fix() -> str:
    return f"remove {trust_store_path()} and trust your project files again (dlenv config trust)"


def load_trust() -> dict[str, str]:
    """The recorded trust: absolute file path -> sha256 of the content the user trusted."""
    from dlenv.statefile import read_text

    path = trust_store_path()
    text = read_text(path, what="trusted project list", fix=_trust_fix())
    if text is None:
        return {}
    try:
        data = json.loads(text)
        files = data["files"]
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)
            for k, v in files.items()
        ):
            raise ValueError("bad entries")
    except (ValueError, KeyError, TypeError):
        raise StateFileError(
            f"trusted project list {path} is corrupt (not dlenv's JSON)", _trust_fix()
        ) from None
    return dict(files)


def _key(path: Path) -> str:
    return str(path.resolve())


def _read_config_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror or type(exc).__name__}", "fix or remove that file"
        ) from None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def trust_state(path: Path, data: bytes | None = None) -> str:
    """ "trusted", "changed" (trusted once, edited since) or "untrusted" for a project file."""
    data = _read_config_bytes(path) if data is None else data
    recorded = load_trust().get(_key(path))
    if recorded is None:
        return "untrusted"
    return "trusted" if recorded == _digest(data) else "changed"


def describe_files() -> list[ConfigFile]:
    """Every dlenv.toml that applies, with its trust state (for `dlenv config`)."""
    out = []
    user = user_config_file()
    if user.is_file():
        out.append(ConfigFile(user, "user", "user"))
    project = project_file()
    if project is not None:
        data = _read_config_bytes(project)
        out.append(ConfigFile(project, "project", trust_state(project, data), _digest(data)))
    return out


def _checked_project_path(path: Path) -> Path:
    if path.name != "dlenv.toml":
        raise UsageError(
            f"{path} is not a dlenv.toml", "give the path of a project's dlenv.toml file"
        )
    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file", "check the path")
    if _same(path, user_config_file()):
        raise UsageError(f"{path} is your own config file: it is always trusted", "nothing to do")
    return path


def trust(path: Path) -> tuple[Path, str, bool]:
    """Record `path`'s current content as trusted: (absolute path, sha256, changed?).

    The file must be a readable, valid dlenv.toml: trusting something dlenv would refuse to
    load anyway helps nobody.
    """
    from dlenv.statefile import atomic_write, file_lock

    path = _checked_project_path(Path(path).expanduser().absolute())
    data = _read_config_bytes(path)
    _parse(path, data)  # refuse to trust a file that does not load
    digest = _digest(data)
    store = trust_store_path()
    store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with file_lock(store):
        files = load_trust()
        changed = files.get(_key(path)) != digest
        if changed:
            files[_key(path)] = digest
            atomic_write(store, json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")
    return Path(_key(path)), digest, changed


def untrust(path: Path) -> bool:
    """Forget `path`'s trust; False when it was not trusted (works for deleted files too)."""
    from dlenv.statefile import atomic_write, file_lock

    key = _key(Path(path).expanduser().absolute())
    store = trust_store_path()
    if not store.exists():
        return False
    with file_lock(store):
        files = load_trust()
        if files.pop(key, None) is None:
            return False
        atomic_write(store, json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")
    return True


def _parse(path: Path, data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"cannot read {path}: not UTF-8 text", "fix or remove that file"
        ) from None
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"cannot read {path}: {reason}", "fix or remove that file") from None
    table = parsed.get("dlenv", parsed)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [dlenv] is not a table", "fix or remove that file")
    return table


def _notice(path: Path, ignored: list[str], state: str) -> str:
    why = "changed since you trusted it" if state == "changed" else "untrusted project config"
    return (
        f"notice: ignoring {', '.join(ignored)} from {path} ({why}); "
        f"trust it with: dlenv config trust {shlex.quote(str(path))}"
    )


def load(flags: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Resolve settings from every layer; `flags` holds only options the user actually gave."""
    env = dict(os.environ) if env is None else env
    settings = Settings()
    names = set(setting_names())

    def apply(name: str, value: Any, origin: str) -> None:
        setattr(settings, name, coerce(name, value, origin))
        settings.sources[name] = origin

    user = user_config_file()
    for path in config_files():
        data = _read_config_bytes(path)
        table = _parse(path, data)
        for key in table:
            if key.replace("-", "_") not in names:
                raise ConfigError(
                    f"{path}: unknown setting {key!r}",
                    f"known settings: {', '.join(sorted(names))}",
                )
        risky = [k for k, v in table.items() if needs_trust(k.replace("-", "_"), v)]
        # the trust store is read only when it matters (a corrupt one then says so)
        state = "user" if path == user or not risky else trust_state(path, data)
        ignored = []
        for key, value in table.items():
            name = key.replace("-", "_")
            if state not in {"user", "trusted"} and key in risky:
                ignored.append(name)
                continue
            apply(name, value, str(path))
            if name in PATH_SETTINGS and getattr(settings, name):
                setattr(
                    settings, name, str(path.parent / Path(getattr(settings, name)).expanduser())
                )
        if ignored:
            settings.notices.append(_notice(path, ignored, state))

    if env.get("AWS_PROFILE"):
        apply("profile", env["AWS_PROFILE"], "AWS_PROFILE")
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION"):  # AWS_REGION wins, as in boto3
        if env.get(var):
            apply("region", env[var], var)
    for name in names:
        var = f"DLENV_{name.upper()}"
        if var in env:
            apply(name, env[var], var)

    for name, value in (flags or {}).items():
        if value is not None:
            apply(name, value, "--" + name.replace("_", "-"))
    _validate(settings)
    return settings


def _where(settings: Settings, name: str) -> str:
    """`--region`, `AWS_REGION` or `/path/dlenv.toml: region`: where a bad value came from."""
    origin = settings.sources.get(name, "default")
    if origin.startswith("--"):
        return origin
    return f"{origin}: {name} ="


def _bad(settings: Settings, name: str, what: str, hint: str) -> ConfigError:
    value = getattr(settings, name)
    return ConfigError(f"{_where(settings, name)} {value!r} {what}", hint)


def _validate(settings: Settings) -> None:
    """Every value that reaches AWS, a file or a shell is checked here, whatever its source."""
    if settings.budget is not None and not 0 < settings.budget <= 100_000:
        raise ConfigError(
            f"budget = {settings.budget:g} US dollars is out of range",
            "use --budget between 0.01 and 100000 (or leave it out for no budget)",
        )
    if not 8 <= settings.disk <= 16384:
        raise ConfigError(
            f"disk = {settings.disk} GB is out of range", "use --disk between 8 and 16384 (GB)"
        )
    if settings.idle_stop < 0:
        raise ConfigError("idle_stop cannot be negative", "use --idle-stop 0 to disable auto-stop")
    if settings.idle_stop > _MAX_IDLE_MINUTES:
        raise _bad(
            settings, "idle_stop", "minutes is more than a week", "use 0 to disable auto-stop"
        )
    if not 1 <= settings.ssh_timeout <= _MAX_SSH_TIMEOUT:
        raise _bad(
            settings, "ssh_timeout", "is out of range", "use 1 to 86400 seconds (default 600)"
        )
    if settings.region is not None and not REGION_RE.fullmatch(settings.region):
        raise _bad(settings, "region", "is not an AWS region name", "e.g. --region us-east-1")
    if settings.profile is not None and not _PROFILE.fullmatch(settings.profile):
        raise _bad(
            settings,
            "profile",
            "is not a valid AWS profile name",
            "use the name of a [profile NAME] section of ~/.aws/config",
        )
    if not _INSTANCE.fullmatch(settings.instance):
        raise _bad(settings, "instance", "is not an instance type", "e.g. --instance g4dn.xlarge")
    if not _AMI.fullmatch(settings.ami):
        raise _bad(
            settings,
            "ami",
            "is not an image spec",
            "use ubuntu-24.04, ubuntu-22.04, debian-12 or an id like ami-0123456789abcdef0",
        )
    if settings.ssh_user is not None and not LOGIN_NAME_RE.fullmatch(settings.ssh_user):
        raise _bad(
            settings,
            "ssh_user",
            "is not a valid login name",
            "use letters, digits, '.', '_' or '-', not starting with '.' or '-' (e.g. ubuntu)",
        )
    if settings.ip_check_url and not _URL.fullmatch(settings.ip_check_url):
        raise _bad(
            settings, "ip_check_url", "is not an http(s) URL", "e.g. https://checkip.amazonaws.com"
        )
    for name in ("ssh_proxy_command", "allow_cidr"):
        value = getattr(settings, name)
        if value is not None and _CONTROL.search(value):
            raise _bad(
                settings, name, "contains a control character (newline?)", "use one plain line"
            )
