"""Settings with one precedence: defaults < dlenv.toml (user, then project) < environment < flags.

Every setting is declared once in `SETTINGS` (name, type, default, help); the environment
variable is always `DLENV_<NAME>` and `--help` shows it. AWS's own variables (`AWS_PROFILE`,
`AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`) keep the meaning boto3 gives them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dlenv.errors import ConfigError

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
    python: str = field(default="conda", metadata={"help": "python manager: conda or uv"})
    ip_check_url: str = field(
        default="https://checkip.amazonaws.com",
        metadata={"help": "where the caller's public IP is detected"},
    )
    sources: dict[str, str] = field(default_factory=dict, metadata={"internal": True})

    def as_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get("internal")
        }


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings) if not f.metadata.get("internal")]


def _coerce(name: str, raw: Any, origin: str) -> Any:
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = str(kinds[name])
    try:
        if "bool" in kind:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if "int" in kind:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        return None if raw is None else str(raw)
    except ValueError:
        expected = "true/false" if "bool" in kind else "an integer"
        raise ConfigError(
            f"{origin}: {name} = {raw!r} is not {expected}", f"fix {name} in {origin}"
        ) from None


def config_files() -> list[Path]:
    """dlenv.toml files that apply, lowest precedence first: user config, then project."""
    from dlenv.paths import config_dir

    found = []
    user = config_dir() / "dlenv.toml"
    if user.is_file():
        found.append(user)
    here = Path.cwd()
    for directory in (here, *here.parents):
        candidate = directory / "dlenv.toml"
        if candidate.is_file():
            if candidate != user:
                found.append(candidate)
            break
    return found


def load(flags: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Resolve settings from every layer; `flags` holds only options the user actually gave."""
    env = dict(os.environ) if env is None else env
    settings = Settings()
    names = set(setting_names())

    def apply(name: str, value: Any, origin: str) -> None:
        setattr(settings, name, _coerce(name, value, origin))
        settings.sources[name] = origin

    for path in config_files():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", "fix or remove that file") from None
        table = data.get("dlenv", data)
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in names:
                raise ConfigError(
                    f"{path}: unknown setting {key!r}",
                    f"known settings: {', '.join(sorted(names))}",
                )
            apply(name, value, str(path))

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


def _validate(settings: Settings) -> None:
    if settings.python not in {"conda", "uv"}:
        raise ConfigError(
            f"python = {settings.python!r} is not conda or uv", "use --python conda or --python uv"
        )
    if settings.spot_type not in {"one-time", "persistent"}:
        raise ConfigError(
            f"spot_type = {settings.spot_type!r} is not one-time or persistent",
            "use --spot-type one-time or --spot-type persistent",
        )
    if settings.spot_fallback not in {"none", "on-demand"}:
        raise ConfigError(
            f"spot_fallback = {settings.spot_fallback!r} is not none or on-demand",
            "use --spot-fallback on-demand (or none)",
        )
    if not 8 <= settings.disk <= 16384:
        raise ConfigError(
            f"disk = {settings.disk} GB is out of range", "use --disk between 8 and 16384 (GB)"
        )
    if settings.idle_stop < 0:
        raise ConfigError("idle_stop cannot be negative", "use --idle-stop 0 to disable auto-stop")
