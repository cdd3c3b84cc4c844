"""What the user chose for one provisioning run, as one immutable value.

The same object drives the SSH runner and `render_script`, so a Dockerfile and a VM provisioned
with the same options reach the same end state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dlenv.errors import UsageError

PROFILES = ("vm", "container")
PYTHON_MANAGERS = ("conda", "uv")

UPLOAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
"""What a file dlenv uploads may be called (wheels, installers): the name becomes part of remote
paths and build contexts, so anything a shell, a Dockerfile or a listing could read as more than
one plain word (quotes, `$`, `;`, spaces, newlines, a leading `-`) is refused up front."""
WHEEL_SUFFIXES = (".whl", ".tar.gz", ".zip")
"""Files of a --wheelhouse that any channel uses (the runner uploads the *.whl ones)."""
USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._@-]{0,63}")
"""A login user name: the POSIX portable set plus `@` (directory users such as `ann@corp`, which
`id -un` can print on an SSH box). It is written into systemd units and shell variables, so
nothing else is accepted."""
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_CA_BUNDLE_BYTES = 1024 * 1024
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


def check_upload_name(path: Path, flag: str) -> None:
    """Refuse a file whose name could be more than one inert word on the other side."""
    name = Path(path).name
    if not UPLOAD_NAME.fullmatch(name):
        raise UsageError(
            f"{flag}: file name {name!r} is not allowed: only letters, digits and ._+- "
            "(not first); no spaces, quotes, newlines or shell characters",
            "rename the file (wheel and installer names never need anything else)",
        )


def wheelhouse_files(path: Path) -> list[Path]:
    """The files of a wheelhouse some channel uses, each name checked (`check_upload_name`)."""
    files = sorted(p for p in Path(path).iterdir() if p.name.endswith(WHEEL_SUFFIXES))
    for file in files:
        check_upload_name(file, f"--wheelhouse {path}")
    return files


def read_ca_bundle(path: Path) -> str:
    """The --ca-bundle text as hosts get it: X.509 PEM certificates, nothing else that matters.

    Parsed with `cryptography` so only a real bundle goes anywhere: empty files, DER, garbage, a
    private key (never ship one) or anything over 1 MiB is refused with one line naming the file.
    Text outside the PEM blocks (the `# Subject:` comments bundles carry) is kept, as before.
    Returns the text stripped plus one newline (byte-identical to what the Ansible role writes).
    """
    path = Path(path)
    fix = "give the CA certificate(s) as PEM (-----BEGIN CERTIFICATE----- ...)"
    raw = _read_capped(path, "--ca-bundle", fix, MAX_CA_BUNDLE_BYTES, "1 MiB a CA bundle can be")
    if not raw.strip():
        raise UsageError(f"--ca-bundle {path} is empty", fix)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        if raw[:1] == b"\x30":  # an ASN.1 SEQUENCE: a DER certificate
            raise UsageError(
                f"--ca-bundle {path} is DER (binary), not PEM",
                f"convert it: openssl x509 -inform der -in {path} -out ca.pem",
            ) from None
        raise UsageError(f"--ca-bundle {path} is binary, not a PEM text file", fix) from None
    if "\0" in text:
        raise UsageError(f"--ca-bundle {path} is binary, not a PEM text file", fix)
    labels = _PEM_BLOCK.findall(text)
    if any("PRIVATE KEY" in label for label in labels):
        raise UsageError(
            f"--ca-bundle {path} contains a private key: refusing to copy it anywhere",
            "give only the CA certificate(s); keep the key where it is",
        )
    others = sorted({label for label in labels if label != "CERTIFICATE"})
    if others:
        raise UsageError(
            f"--ca-bundle {path} holds {', '.join(others)} block(s), not only certificates", fix
        )
    if not labels:
        raise UsageError(f"--ca-bundle {path} holds no PEM certificate", fix)
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError as exc:
        raise UsageError(
            f"--ca-bundle {path} has a certificate that does not parse "
            f"({str(exc).splitlines()[0] if str(exc) else 'invalid'})",
            fix,
        ) from None
    if len(certs) != len(labels):  # pragma: no cover - cryptography parses every block or raises
        raise UsageError(
            f"--ca-bundle {path}: only {len(certs)} of {len(labels)} blocks parse", fix
        )
    return text.strip() + "\n"


# -- the user's own packages (--requirements, --conda-env, packages = [...]) ---------------------
MAX_REQUIREMENTS_BYTES = 256 * 1024
"""A requirements file or environment.yml over this is not one a person wrote: refused."""
REQUIREMENTS_UPLOAD = "dlenv-user-requirements.txt"
CONDA_ENV_UPLOAD = "dlenv-user-conda-env.yml"
_URL_VALUE = re.compile(r"https?://\S+")
_VCS_VALUE = re.compile(r"(?:git|hg|svn|bzr)\+[a-z]+://\S+")
_ALLOWED_FLAGS = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "--pre",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
    "--trusted-host",
    "--require-hashes",
}
"""Requirements-file options that name nothing on this machine (indexes, binary choices)."""
_VALUE_FLAGS = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "--only-binary",
    "--no-binary",
    "--trusted-host",
    "-e",
    "--editable",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-f",
    "--find-links",
}
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_CONDA_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:+-]*")
_CONDA_SPEC = re.compile(r"(?:[A-Za-z0-9._-]+::)?([A-Za-z0-9_][A-Za-z0-9._-]*)(.*)")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.+-]")
"""A file's name goes into the uploaded file's header comment: anything else (a newline!) is `_`."""
_TORCH_ALIASES = {"pytorch", "pytorch-cuda", "pytorch-cpu", "pytorch-gpu", "cudatoolkit"}


@dataclass(frozen=True)
class UserPackages:
    """What the `user-packages` step installs, as the files it reads (never pasted in a script).

    `requirements` joins the --requirements file, the `packages` list and an environment.yml's
    `pip:` section (each under a comment naming where it came from); `conda_env` is the
    environment.yml's conda part, re-written by dlenv (name and prefix dropped). Empty: none.
    """

    requirements: str = ""
    conda_env: str = ""

    @property
    def digest(self) -> str:
        """Names exactly these inputs: recorded in the env, so a changed file re-runs the step."""
        import hashlib

        return hashlib.sha256(f"{self.requirements}\0{self.conda_env}".encode()).hexdigest()[:16]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def stack_pins() -> dict[str, str]:
    """{normalised name: version} of every package the stack pins: a user's file may not move
    them (the `user-packages` step installs with their installed versions as constraints)."""
    from dlenv.provision.manifest import load_stack

    data = load_stack().data
    pins = dict(data.get("packages", {}))
    pins.update(data.get("scientific", {}).get("packages", {}))
    return {_norm(k): str(v) for k, v in pins.items()}


def _read_capped(path: Path, flag: str, fix: str, limit: int, limit_text: str) -> bytes:
    """The bytes of the user's file given as `flag`, refused with one line when it is no
    regular file, is over `limit` bytes ("over the {limit_text}") or cannot be read: a user's
    file is read whole into memory and copied to hosts, so a huge one must stop here."""
    if not path.is_file():
        raise UsageError(f"{flag} {path} is not a file", fix)
    try:
        size = path.stat().st_size
        if size > limit:
            raise UsageError(f"{flag} {path} is {size} bytes, over the {limit_text}", fix)
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"{flag} {path} cannot be read: {exc.strerror or exc}", fix) from None
    if len(raw) > limit:  # grew between stat and read
        raise UsageError(f"{flag} {path} is over the {limit_text}", fix)
    return raw


def _read_user_text(path: Path, flag: str, fix: str) -> str:
    """A small UTF-8 text file, or one line saying why not (binary, huge, unreadable)."""
    raw = _read_capped(Path(path), flag, fix, MAX_REQUIREMENTS_BYTES, "256 KiB such a file can be")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {path} is binary, not a UTF-8 text file", fix) from None
    bad = re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)
    if bad:
        raise UsageError(
            f"{flag} {path} holds a control character ({bad.group()!r}): not a text file", fix
        )
    return text.replace("\r\n", "\n")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) per requirement, `\\` continuations joined, comments cut."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.split("\n"), 1):
        if not pending:
            start = number
        line = raw
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append((start, line))
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def _check_requirement(line: str, where: str, pins: dict[str, str]) -> None:
    """One requirement line: nothing that names a file of this machine, no stack pin moved."""
    fix_local = "publish it to an index, or give a VCS/https URL (git+https://...)"
    if line.startswith("-"):
        match = re.match(r"(--[A-Za-z][A-Za-z-]*|-[A-Za-z])(?:=|\s+)?(.*)", line)
        flag, value = (match[1], match[2].strip()) if match else (line, "")
        if flag in {"-e", "--editable"}:
            if not _VCS_VALUE.fullmatch(value):
                raise UsageError(
                    f"{where}: `{line}` installs a local path ({value or 'nothing'}), which "
                    "does not exist on the host",
                    fix_local,
                )
            return
        if flag in {"-r", "--requirement", "-c", "--constraint"}:
            if not _URL_VALUE.fullmatch(value):
                raise UsageError(
                    f"{where}: `{line}` includes {value or 'a file'}, which does not exist on "
                    "the host",
                    "paste that file's lines into this one (or give an https:// URL)",
                )
            return
        if flag in {"-f", "--find-links"}:
            if not _URL_VALUE.fullmatch(value):
                raise UsageError(
                    f"{where}: `{line}` points at a local folder, which does not exist on the host",
                    "give an https:// URL, or pass the wheels with --wheelhouse DIR",
                )
            return
        if flag not in _ALLOWED_FLAGS:
            raise UsageError(
                f"{where}: option {flag} is not one dlenv passes on",
                "keep index and binary options (-i, --extra-index-url, --only-binary, --pre) "
                "and plain requirements",
            )
        if flag in _VALUE_FLAGS and not value:
            raise UsageError(f"{where}: option {flag} needs a value", "give it, or drop the line")
        return
    spec = re.split(r"\s+--hash[= ]", line)[0].strip()
    if (
        spec.startswith((".", "/", "~", "file:"))
        or re.match(r"[A-Za-z]:\\", spec)
        or (spec.endswith((".whl", ".tar.gz", ".zip")) and "://" not in spec)
    ):
        raise UsageError(
            f"{where}: `{spec}` is a local path, which does not exist on the host", fix_local
        )
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise UsageError(
            f"{where}: `{spec}` is not a requirement ({str(exc).splitlines()[0]})",
            "write NAME, NAME==VERSION, NAME>=VERSION or NAME @ https://... (PEP 508)",
        ) from None
    if req.url and req.url.startswith("file:"):
        raise UsageError(
            f"{where}: `{spec}` is a local path, which does not exist on the host", fix_local
        )
    pinned = pins.get(_norm(req.name))
    if pinned is None:
        return
    if req.url or (req.specifier and not req.specifier.contains(pinned, prereleases=True)):
        raise UsageError(
            f"{where}: `{spec}` would replace the stack's {req.name} {pinned}",
            f"drop that line or loosen it (the env keeps {req.name} {pinned}; "
            "change provision/stack.toml to move the stack)",
        )


def _check_lines(text: str, label: str, pins: dict[str, str]) -> None:
    for number, line in _logical_lines(text):
        _check_requirement(line, f"{label} line {number}", pins)


def _conda_parts(path: Path, python: str, pins: dict[str, str]) -> tuple[str, list[str]]:
    """(conda-only environment.yml text or "", the pip: section's lines) of --conda-env."""
    fix = "give a conda environment.yml (channels: [...], dependencies: [...])"
    text = _read_user_text(path, "--conda-env", fix)
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"--conda-env {path} is not valid YAML{at}", fix) from None
    if not isinstance(data, dict):
        raise UsageError(f"--conda-env {path} is not a mapping of channels/dependencies", fix)
    unknown = sorted(
        str(k) for k in data if k not in {"name", "prefix", "channels", "dependencies"}
    )
    if unknown:
        raise UsageError(
            f"--conda-env {path}: {', '.join(unknown)} is not supported "
            "(dlenv reads name, channels, dependencies)",
            "drop those keys (environment variables belong in the notebook, not the env file)",
        )
    channels = data.get("channels") or []
    if not isinstance(channels, list) or not all(
        isinstance(c, str) and _CONDA_CHANNEL.fullmatch(c) for c in channels
    ):
        raise UsageError(f"--conda-env {path}: channels must be a list of channel names", fix)
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise UsageError(f"--conda-env {path}: dependencies must be a list", fix)
    conda: list[str] = []
    pip_lines: list[str] = []
    version = _stack_python()
    for dep in deps:
        if isinstance(dep, dict) and set(dep) == {"pip"} and isinstance(dep["pip"], list):
            for line in dep["pip"]:
                if not isinstance(line, str):
                    raise UsageError(f"--conda-env {path}: pip: holds a non-text entry", fix)
                _check_requirement(line.strip(), f"--conda-env {path} (pip:)", pins)
                pip_lines.append(line.strip())
            continue
        if isinstance(dep, (int, float)) and not isinstance(dep, bool):
            dep = str(dep)
        match = _CONDA_SPEC.fullmatch(dep.strip()) if isinstance(dep, str) else None
        if match is None or re.search(r"[;'\"`$&\\\s]", match.group(2).replace(" ", "")):
            raise UsageError(f"--conda-env {path}: dependency {dep!r} is not a conda spec", fix)
        name, rest = _norm(match.group(1)), match.group(2).strip()
        if name == "pip":
            continue
        if name == "python":
            if rest and not re.fullmatch(rf"[=]{{1,2}}{re.escape(version)}(\.\*|\.[0-9]+)?", rest):
                raise UsageError(
                    f"--conda-env {path}: python{rest} differs from the stack's Python {version}",
                    "drop the python line (the env's Python is the stack's)",
                )
            continue
        if name in pins or name in _TORCH_ALIASES:
            raise UsageError(
                f"--conda-env {path}: {dep} would replace the stack's "
                f"{'torch' if name in _TORCH_ALIASES else name}",
                "drop it: the stack installs it (provision/stack.toml pins its version)",
            )
        conda.append(dep.strip())
    if conda and python != "conda":
        raise UsageError(
            f"--conda-env {path} lists conda packages ({', '.join(conda[:3])}"
            f"{', ...' if len(conda) > 3 else ''}), which need a conda env",
            "use --python conda, or move them under pip: / into --requirements",
        )
    if not conda:
        return "", pip_lines
    body = yaml.safe_dump(
        {"channels": channels, "dependencies": conda}, default_flow_style=False, sort_keys=False
    )
    return (
        f"# from {_SAFE_NAME.sub('_', Path(path).name)} (dlenv: conda packages only; pip: goes to pip)\n{body}",
        pip_lines,
    )


def _stack_python() -> str:
    from dlenv.provision.manifest import load_stack

    return str(load_stack().get("python.version"))


def user_packages(options: ProvisionOptions) -> UserPackages:
    """Check --requirements, --conda-env and `packages` and build the files the step reads.

    Hostile content never reaches a shell: the result is uploaded as files, and every line
    that names something on this machine (an editable path, an included file, a local folder
    of wheels) or would move a stack pin is refused here with one line naming the file and line.
    """
    pins = stack_pins()
    parts: list[str] = []
    if options.requirements is not None:
        path = Path(options.requirements)
        text = _read_user_text(
            path, "--requirements", "give a pip requirements file (one requirement a line)"
        )
        _check_lines(text, f"--requirements {path}", pins)
        parts.append(f"# from {_SAFE_NAME.sub('_', path.name)}\n{text.rstrip()}\n")
    if options.packages:
        for index, package in enumerate(options.packages, 1):
            if not isinstance(package, str) or not package.strip() or "\n" in package:
                raise UsageError(
                    f"packages entry {index} ({package!r}) is not one requirement",
                    "write each as NAME or NAME==VERSION",
                )
            if package.strip().startswith("-"):
                raise UsageError(
                    f"packages entry {index} ({package!r}) is an option, not a package",
                    "list packages only (put options in a --requirements file)",
                )
            _check_requirement(package.strip(), f"packages entry {index}", pins)
        parts.append("# packages\n" + "".join(p.strip() + "\n" for p in options.packages))
    conda = ""
    if options.conda_env is not None:
        conda, pip_lines = _conda_parts(Path(options.conda_env), options.python, pins)
        if pip_lines:
            parts.append(
                f"# pip: of {_SAFE_NAME.sub('_', Path(options.conda_env).name)}\n"
                + "".join(f"{ln}\n" for ln in pip_lines)
            )
    return UserPackages(requirements="".join(parts), conda_env=conda)


def check_frameworks(names: tuple[str, ...] | list[str]) -> None:
    """Refuse a --frameworks name the stack has no [frameworks.NAME] table for (one line)."""
    if not names:
        return
    from dlenv.provision.manifest import load_stack

    allowed = sorted(load_stack().data.get("frameworks", {}))
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise UsageError(
            f"--frameworks: unknown framework {', '.join(repr(n) for n in unknown)}",
            f"frameworks are: {', '.join(allowed)} (e.g. --frameworks {','.join(allowed)})",
        )


@dataclass(frozen=True)
class ProvisionOptions:
    python: str = "conda"
    """conda (Miniforge/Anaconda installer, sha256-checked) or uv."""
    conda_dist: str | None = None
    """miniforge | anaconda; None = the manifest's default."""
    conda_installer: Path | None = None
    """A local installer file used instead of downloading (air-gapped hosts; still sha256-checked)."""
    wheelhouse: Path | None = None
    """Local directory of wheels: uploaded to the host and preferred by every pip/uv install.
    `render_script` expects the wheels at `<python.root>/wheelhouse` (the Dockerfile copies them)."""
    ca_bundle: Path | None = None
    """Extra CA certificate(s) (PEM) trusted by apt, pip, uv and conda (TLS-inspecting proxies)."""
    idle_stop: int = 60
    """Minutes idle before `shutdown -h`; 0 disables the auto-stop timer."""
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    cpu: bool = False
    """Treat the host as GPU-less: no driver/CUDA steps, CPU torch."""
    profile: str = "vm"
    """vm: a systemd machine (services, timers, driver). container: an image build (no systemd)."""
    user: str | None = None
    """The login user owning the env and running Jupyter (default: the SSH user; root -> root)."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Extra environment for every step (e.g. PIP_INDEX_URL for a mirror the user chose)."""
    requirements: Path | None = None
    """The user's pip requirements file (--requirements): checked here, uploaded as a file,
    installed by the `user-packages` step with the stack's pins as constraints."""
    conda_env: Path | None = None
    """The user's conda environment.yml (--conda-env): its conda packages go to `conda env
    update` (needs --python conda), its `pip:` section joins the requirements."""
    packages: tuple[str, ...] = ()
    """Single requirements (`packages = [...]` in dlenv.toml), installed like --requirements."""
    frameworks: tuple[str, ...] = ()
    """More frameworks as their own kernels (--frameworks tensorflow,jax): names of the stack's
    [frameworks.*] tables, each installed into an env of its own by the `frameworks` step."""
    efa: bool = False
    """The host has an EFA interface (`dlenv up --nodes N --efa`): the `efa` step installs the
    EFA software. Off, the step is not part of the plan at all."""

    def __post_init__(self) -> None:
        if self.python not in PYTHON_MANAGERS:
            raise UsageError(
                f"--python {self.python!r} is not conda or uv", "use --python conda or --python uv"
            )
        if self.profile not in PROFILES:
            raise UsageError(f"profile {self.profile!r} is not vm or container")
        if isinstance(self.idle_stop, bool) or not isinstance(self.idle_stop, int):
            raise UsageError(f"--idle-stop {self.idle_stop!r} is not a whole number of minutes")
        if self.idle_stop < 0:
            raise UsageError(
                "--idle-stop cannot be negative", "use --idle-stop 0 to disable auto-stop"
            )
        if self.wheelhouse is not None:
            if not Path(self.wheelhouse).is_dir():
                raise UsageError(f"--wheelhouse {self.wheelhouse} is not a directory")
            wheelhouse_files(Path(self.wheelhouse))
        if self.ca_bundle is not None:
            read_ca_bundle(Path(self.ca_bundle))
        if self.conda_installer is not None:
            if not Path(self.conda_installer).is_file():
                raise UsageError(f"conda installer {self.conda_installer} is not a file")
            check_upload_name(
                Path(self.conda_installer), f"--conda-installer {Path(self.conda_installer).parent}"
            )
        if self.user is not None and not USER_NAME.fullmatch(self.user):
            raise UsageError(
                f"user {self.user!r} is not a valid login name",
                "use letters, digits, '.', '_', '@' and '-' (starting with a letter or _)",
            )
        bad_env = [k for k in self.extra_env if not ENV_NAME.fullmatch(k)]
        if bad_env:
            raise UsageError(f"{bad_env[0]!r} is not an environment variable name")
        if self.requirements is not None or self.conda_env is not None or self.packages:
            user_packages(self)  # every file and line checked before any host is contacted
        check_frameworks(self.frameworks)
        # Bad step names fail here, before any host is contacted.
        from dlenv.provision.steps import validate_selection

        validate_selection(tuple(self.only), "--only")
        validate_selection(tuple(self.skip), "--skip")

    def with_(self, **changes: Any) -> ProvisionOptions:
        return replace(self, **changes)
