"""The provisioning steps: small objects whose content is shell rendered from the manifest.

A `Step` has a `check` (exit 0 = already true on this host) and an `apply`; both are bash bodies
rendered with jinja2 from `provision/steps/<name>.{check,apply}.sh.j2` and run after the shared
prelude (`_prelude.sh.j2`, helper functions exported to every body). The SSH runner, the
Dockerfile and Packer all use the same rendered bodies, so no channel has its own install logic.

Rendering takes optional `HostFacts`: with them (the SSH runner) OS-specific steps render only the
commands for that OS and kernel (the golden plans show exactly these); without them
(`render_script`) they dispatch on /etc/os-release at run time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlenv.errors import ProvisionError, UsageError
from dlenv.provision.manifest import Stack, provision_dir
from dlenv.provision.options import (
    CONDA_ENV_UPLOAD,
    REQUIREMENTS_UPLOAD,
    USER_NAME,
    ProvisionOptions,
    UserPackages,
    read_ca_bundle,
    user_packages,
)
from dlenv.provision.osinfo import HostFacts
from dlenv.ssh.command import quote

if TYPE_CHECKING:
    from collections.abc import Iterator

    import jinja2

BASE_PACKAGES = (
    "ca-certificates",
    "curl",
    "python3",
    "python3-venv",
    "pciutils",
    "procps",
    "iproute2",
    "bzip2",
    "git",
    "rsync",  # `dlenv sync` (both ends need it)
)
KERNEL_RELEASE = re.compile(r"[0-9][0-9A-Za-z.+~_-]*")
"""A `uname -r` value safe to render into a step (`6.8.0-1015-aws`, `6.1.0-37-cloud-amd64`)."""
REBOOT_EXIT = 100
"""Exit code of the runner's step wrapper (never of an apply) when the apply left the
/run/dlenv/reboot-required marker: the runner reboots, reconnects and re-checks the step."""


@dataclass(frozen=True)
class StepDef:
    name: str
    summary: str
    profiles: tuple[str, ...] = ("vm", "container")
    gpu_only: bool = False
    tags: tuple[str, ...] = ()


STEP_DEFS: tuple[StepDef, ...] = (
    StepDef("ca-bundle", "trust the --ca-bundle CA for apt/pip/uv/conda"),
    StepDef("base-packages", "apt packages every later step needs"),
    StepDef(
        "nvidia-driver",
        "NVIDIA driver (open modules), nouveau off, persistence on",
        profiles=("vm",),
        gpu_only=True,
        tags=("reboot",),
    ),
    StepDef("cuda-toolkit", "CUDA toolkit, nvcc on PATH", profiles=("vm",), gpu_only=True),
    # Only for hosts launched with an EFA interface (options.efa): not in any other plan.
    StepDef(
        "efa",
        "EFA software (driver, libfabric, Open MPI) for NCCL across nodes",
        profiles=("vm",),
        gpu_only=True,
        tags=("reboot",),
    ),
    StepDef("python-env", "conda or uv environment"),
    StepDef("pytorch", "torch + torchvision matching the CUDA version"),
    StepDef("jupyterlab", "JupyterLab + ipykernel, kernel registered"),
    StepDef("scientific", "pandas, matplotlib, scikit-learn, scipy, tqdm, ipywidgets, Keras 3"),
    StepDef("frameworks", "--frameworks (TensorFlow, JAX): an env and a kernel each, verified"),
    StepDef(
        "user-packages",
        "your --requirements / --conda-env / packages, the stack's pins held",
    ),
    # Before the Lab service: its unit runs the starter-notebook seeder this step installs.
    StepDef("smoke-test", "the smoke-test job (dlenv-smoke) and the starter notebooks"),
    StepDef(
        "jupyterlab-service",
        "systemd service on 127.0.0.1 with a 0600 token",
        profiles=("vm",),
        tags=("per-instance",),
    ),
    StepDef(
        "idle-autostop",
        "systemd timer: shut down when idle",
        profiles=("vm",),
        tags=("per-instance",),
    ),
)
STEP_NAMES = tuple(d.name for d in STEP_DEFS)


@dataclass(frozen=True)
class Step:
    name: str
    summary: str
    check: str
    apply: str
    gpu_only: bool = False
    tags: tuple[str, ...] = ()
    skip_reason: str | None = None
    """Set when this run leaves the step out (e.g. no NVIDIA GPU); the step is still listed."""

    @property
    def digest(self) -> str:
        """Identifies exactly what this step does; recorded on the host beside the fingerprint."""
        return hashlib.sha256(f"{self.check}\0{self.apply}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class StepSet:
    """The steps of one run, in order, plus the prelude their bodies run after."""

    prelude: str
    steps: tuple[Step, ...]
    fingerprint: str
    context: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def active(self) -> list[Step]:
        return [s for s in self.steps if s.skip_reason is None]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)


def validate_selection(names: tuple[str, ...], flag: str) -> None:
    unknown = [n for n in names if n not in STEP_NAMES]
    if unknown:
        raise UsageError(
            f"{flag}: unknown step {', '.join(unknown)}", f"steps are: {', '.join(STEP_NAMES)}"
        )


@lru_cache(maxsize=1)
def _jinja_env() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(provision_dir() / "steps")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # `{{ value | q }}`: one shell word (dlenv.ssh.command.quote). Every value that is not a
    # literal of provision/stack.toml (user names, paths built from flags, file names, URLs
    # derived from options) is rendered through it, so no value can become shell syntax.
    env.filters["q"] = quote
    return env


def _render(template: str, context: dict[str, Any]) -> str:
    text: str = _jinja_env().get_template(template).render(**context)
    return text.strip() + "\n"


FILES_DIR_NAME = "files"
"""`provision/files/`: templates of the files the steps install (systemd units, idle check,
profile snippets). Shared with the Ansible roles, which render them with the template module."""


@lru_cache(maxsize=1)
def _files_env() -> jinja2.Environment:
    """Rendering settings equal to Ansible's template module defaults (trim_blocks only)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(provision_dir() / FILES_DIR_NAME)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=False,
        autoescape=False,
    )


def file_context(
    stack: Stack,
    env_prefix: str,
    user: str,
    idle_minutes: int,
    frameworks: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The variables of `provision/files/*.j2`; the Ansible roles define the same names.

    `dlenv_frameworks` is sorted and deduplicated (the template does it again for Ansible's
    own list), so the Lab's kernel list is the same bytes whatever order named them."""
    return {
        "dlenv_stack": stack.data,
        "dlenv_env_prefix": env_prefix,
        "dlenv_owner": user,
        "dlenv_idle_minutes": idle_minutes,
        "dlenv_frameworks": sorted(set(frameworks)),
    }


HEREDOC_DELIMITERS = ("DLENV_EOF", "DLENV_STEP_BODY")
"""The quoted heredoc delimiters the step templates and the renderer use."""


def render_file(name: str, context: dict[str, Any]) -> str:
    """A file's text as the steps embed it: no trailing newline (the heredoc adds one).

    These files are dlenv's own (systemd units, the idle check) rendered from the manifest and
    validated values; a line equal to a heredoc delimiter would end the quoted heredoc early, so
    it is refused outright (user-supplied content never goes this way: it is uploaded).
    """
    text: str = _files_env().get_template(name).render(**context)
    text = text.rstrip("\n")
    if any(line.strip() in HEREDOC_DELIMITERS for line in text.splitlines()):
        raise ValueError(f"{name} renders a heredoc delimiter line")
    return text


def smoke_package_dir() -> Path:
    """The `dlenv_smoke` package to copy onto hosts (a checkout's src/ or the installed one)."""
    import importlib.util

    spec = importlib.util.find_spec("dlenv_smoke")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the dlenv_smoke package is not installed next to dlenv")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def _smoke_payload() -> tuple[str, str]:
    """A reproducible tar.gz of dlenv_smoke (sorted, zero mtimes) as base64 + its digest.

    Computed once per process, so every host of one run (and every run of one long-lived
    process) gets the same payload even while the package is being edited.
    """
    src = smoke_package_dir()
    buf = io.BytesIO()
    import gzip

    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        files = sorted(
            p
            for p in src.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
        )
        for path in files:
            info = tarfile.TarInfo(f"dlenv_smoke/{path.relative_to(src).as_posix()}")
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    encoded = base64.encodebytes(raw).decode().strip()
    return encoded, hashlib.sha256(raw).hexdigest()[:16]


def env_prefix(stack: Stack, options: ProvisionOptions) -> str:
    root = stack.get("python.root")
    if options.python == "uv":
        return f"{root}/env"
    return f"{root}/conda/envs/{stack.get('python.env_name')}"


REMOTE_WHEELHOUSE_NAME = "wheelhouse"
REMOTE_INSTALLERS_NAME = "installers"
REMOTE_UPLOADS_NAME = "uploads"
"""`<python.root>/uploads`: small files the steps read (the --ca-bundle), never pasted into a
script. The SSH runner uploads them; the Dockerfile and Packer bring `uploads/` there."""
CA_UPLOAD_NAME = "dlenv-extra-ca.crt"


def upload_files(stack: Stack, options: ProvisionOptions) -> dict[str, str]:
    """{remote path: text} of the files the steps expect under `<python.root>/uploads`."""
    files = {}
    root = stack.get("python.root")
    if options.ca_bundle:
        files[f"{root}/{REMOTE_UPLOADS_NAME}/{CA_UPLOAD_NAME}"] = read_ca_bundle(options.ca_bundle)
    user = _user_packages(options)
    if user.requirements:
        files[f"{root}/{REMOTE_UPLOADS_NAME}/{REQUIREMENTS_UPLOAD}"] = user.requirements
    if user.conda_env:
        files[f"{root}/{REMOTE_UPLOADS_NAME}/{CONDA_ENV_UPLOAD}"] = user.conda_env
    return files


def _user_packages(options: ProvisionOptions) -> UserPackages:
    """The checked files of --requirements/--conda-env/packages (empty when none was given)."""
    if options.requirements is None and options.conda_env is None and not options.packages:
        return UserPackages()
    return user_packages(options)


def stack_pin_names(stack: Stack) -> list[str]:
    """Every package the stack pins ([packages] and [scientific.packages]): the user-packages
    step holds them at their installed versions, so a user's file cannot replace them."""
    names = list(stack.data.get("packages", {}))
    names += [n for n in stack.data.get("scientific", {}).get("packages", {}) if n not in names]
    return names


def build_context(
    stack: Stack, options: ProvisionOptions, facts: HostFacts | None
) -> dict[str, Any]:
    s = stack.data
    root = s["python"]["root"]
    user = options.user or (facts.user if facts and facts.user else "root")
    if not USER_NAME.fullmatch(user):
        raise ProvisionError(
            f"the login user {user!r} is not a plain user name; nothing was changed",
            "provision as a user named with letters, digits, '.', '_', '@' and '-' only",
        )
    os_key = facts.os.key if facts else None
    gpu = bool(facts and facts.has_nvidia_gpu) and not options.cpu
    dist_name = options.conda_dist or s["conda"]["default_dist"]
    conda = stack.conda_dist(dist_name)
    smoke_b64, smoke_digest = _smoke_payload()
    prefix = env_prefix(stack, options)
    variant = (
        s["torch"]["cpu_variant"]
        if options.cpu or (facts and not gpu)
        else s["torch"]["cuda_variant"]
    )
    index_tpl = s["torch"].get("index_url", "")
    ctx: dict[str, Any] = {
        "s": s,
        "fingerprint": stack.fingerprint,
        "root": root,
        "env_prefix": prefix,
        "user": user,
        "python": options.python,
        "conda": conda,
        "conda_dist_name": dist_name,
        "conda_installer_path": (
            f"{root}/{REMOTE_INSTALLERS_NAME}/{Path(options.conda_installer).name}"
            if options.conda_installer
            else ""
        ),
        "wheelhouse_dir": f"{root}/{REMOTE_WHEELHOUSE_NAME}" if options.wheelhouse else "",
        "extra_env": dict(options.extra_env),
        "os_key": os_key,
        "gpu_build": gpu,
        "torch_variant": variant,
        "torch_index": index_tpl.replace("{variant}", variant) if index_tpl else "",
        "base_packages": BASE_PACKAGES,
        # The bundle travels as a file (upload_files); the steps know only where and its digest.
        "ca_upload": f"{root}/{REMOTE_UPLOADS_NAME}/{CA_UPLOAD_NAME}",
        "ca_sha256": (
            hashlib.sha256(read_ca_bundle(options.ca_bundle).encode()).hexdigest()
            if options.ca_bundle
            else ""
        ),
        # The user's packages travel as files too; the step knows their paths and digests only.
        **_user_context(root, _user_packages(options)),
        "stack_pins": stack_pin_names(stack),
        "smoke_tar_b64": smoke_b64,
        "smoke_digest": smoke_digest,
        "idle_minutes": options.idle_stop,
        "cuda_repo": options.profile == "vm" and not options.cpu,
    }
    ctx["driver_variants"] = _driver_variants(stack, facts)
    # NVSwitch: a fact of the probe when the host is known (the plan shows Fabric Manager only
    # where it belongs); None = decided on the host at run time (Dockerfile, Packer, scripts).
    ctx["nvswitch"] = facts.has_nvswitch if facts else None
    nv = s["nvidia"]
    ctx["fabricmanager_packages"] = [
        p.format(branch=nv["driver_branch"]) for p in nv["fabricmanager_packages"]
    ]
    ctx["fabricmanager_service"] = nv["fabricmanager_service"]
    # Files the steps install come from provision/files/*.j2, which the Ansible roles render
    # too (same variables), so both channels write byte-identical files (checks `cmp` them).
    files = file_context(stack, prefix, user, options.idle_stop, options.frameworks)
    ctx["frameworks"] = framework_context(stack, options, facts)
    ctx["cuda_profile"] = render_file("dlenv-cuda.sh.j2", files)
    ctx["jupyter_unit"] = render_file("dlenv-jupyter.service.j2", files)
    ctx["jupyter_server_config"] = render_file("jupyter_server_config.json.j2", files)
    ctx["jupyterlab_overrides"] = render_file("jupyterlab-overrides.json.j2", files)
    # `name==version` of the scientific set, in the manifest's order (one pip/uv argument each).
    ctx["scientific_requirements"] = [
        f"{name}=={version}" for name, version in s["scientific"]["packages"].items()
    ]
    ctx["idle_conf"] = render_file("idle.conf.j2", files)
    ctx["idle_timer"] = render_file("dlenv-idle.timer.j2", files)
    ctx["idle_service"] = render_file("dlenv-idle.service.j2", files)
    ctx["persistence_unit"] = render_file("dlenv-nvidia-persistence.service.j2", files)
    ctx["idle_script"] = render_file("idle-check.j2", files)
    ctx["seed_examples"] = render_file("dlenv-seed-examples.j2", files)
    return ctx


def framework_context(
    stack: Stack, options: ProvisionOptions, facts: HostFacts | None
) -> list[dict[str, Any]]:
    """One entry per --frameworks name (sorted): its env, kernel and the requirements to install.

    GPU builds where torch gets its CUDA build too (a GPU host, or no facts and no --cpu: an
    image for GPUs); `gpu_verify` is run unconditionally only when the facts say a GPU is there
    (a rendered script checks for one at run time, an image build has none)."""
    s = stack.data
    root = s["python"]["root"]
    gpu = not options.cpu and (facts is None or facts.has_nvidia_gpu)
    out = []
    for name in sorted(set(options.frameworks)):
        spec = s["frameworks"][name]
        reqs = list(spec["gpu"] if gpu else spec["cpu"])
        out.append(
            {
                "name": name,
                "prefix": f"{root}/frameworks/{name}",
                "kernel": f"{s['jupyter']['kernel_name']}-{name}",
                "display_name": spec["display_name"],
                "requirements": reqs,
                # `name==version` of what the check reads from the env's metadata (no extras)
                "dists": [re.sub(r"\[[^\]]*\]", "", r) for r in reqs]
                + [f"ipykernel=={s['packages']['ipykernel']}"],
                "gpu": gpu,
                "gpu_known": bool(facts and facts.has_nvidia_gpu),
                "verify": spec["verify"],
                "gpu_verify": spec["gpu_verify"],
                "keras_backend": spec.get("keras_backend", ""),
            }
        )
    return out


def _user_context(root: str, user: UserPackages) -> dict[str, Any]:
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest() if text else ""

    return {
        "user_requirements": f"{root}/{REMOTE_UPLOADS_NAME}/{REQUIREMENTS_UPLOAD}"
        if user.requirements
        else "",
        "user_requirements_sha256": sha(user.requirements),
        "user_conda_env": f"{root}/{REMOTE_UPLOADS_NAME}/{CONDA_ENV_UPLOAD}"
        if user.conda_env
        else "",
        "user_conda_env_sha256": sha(user.conda_env),
        "user_packages_digest": user.digest if user.requirements or user.conda_env else "",
    }


def _driver_variants(stack: Stack, facts: HostFacts | None) -> list[dict[str, Any]]:
    """One entry per OS family the driver step must handle (just the host's when facts are known)."""
    nv = stack.data["nvidia"]
    branch = nv["driver_branch"]
    keys = [facts.os.key] if facts else stack.supported_os
    flavour_known = bool(facts and facts.kernel_flavour)
    flavour = facts.kernel_flavour if facts and flavour_known else "$(dlenv_kernel_flavour)"
    modules_flavour = flavour if flavour_known else "$flavour"
    # The kernel release comes from the host: rendered only when it is a plain release string.
    kernel = facts.kernel if facts and KERNEL_RELEASE.fullmatch(facts.kernel) else "$(uname -r)"
    variants: dict[str, dict[str, Any]] = {}
    for key in keys:
        family = key.split("-")[0]
        if family == "ubuntu":
            entry = variants.setdefault(
                "ubuntu",
                {
                    "family": "ubuntu",
                    "keys": [],
                    "flavour": flavour,
                    "modules_package": nv["ubuntu_modules_package"].format(
                        branch=branch, flavour=modules_flavour
                    ),
                    "running_modules_package": nv["ubuntu_running_modules_package"].format(
                        branch=branch, kernel=kernel
                    ),
                    "utils_package": nv["ubuntu_utils_package"].format(branch=branch),
                    "compute_utils_package": nv["ubuntu_compute_utils_package"].format(
                        branch=branch
                    ),
                },
            )
        else:
            entry = variants.setdefault(
                key,
                {
                    "family": family,
                    "keys": [],
                    "dist": stack.data["cuda"]["repo_dist"].get(key, ""),
                    "pinning_package": nv["debian_pinning_package"].format(branch=branch),
                    "packages": [p.format(branch=branch) for p in nv["debian_packages"]],
                },
            )
        entry["keys"].append(key)
    for entry in variants.values():
        entry["match"] = "|".join(entry["keys"])
    return list(variants.values())


def build_steps(stack: Stack, options: ProvisionOptions, facts: HostFacts | None = None) -> StepSet:
    """Render every step for this run; selection and GPU/profile skips set `skip_reason`."""
    validate_selection(options.only, "--only")
    validate_selection(options.skip, "--skip")
    ctx = build_context(stack, options, facts)
    no_gpu = options.cpu or (facts is not None and not facts.has_nvidia_gpu)
    steps = []
    for d in STEP_DEFS:
        if options.profile not in d.profiles:
            continue
        if d.name == "ca-bundle" and not options.ca_bundle:
            continue
        if d.name == "user-packages" and not ctx["user_packages_digest"]:
            continue
        if d.name == "efa" and not options.efa:
            continue
        reason = None
        if d.name == "frameworks" and not options.frameworks:
            reason = "no --frameworks"
        elif d.gpu_only and no_gpu:
            reason = "--cpu" if options.cpu else "no NVIDIA GPU"
        elif options.only and d.name not in options.only:
            reason = "not in --only"
        elif d.name in options.skip:
            reason = "--skip"
        steps.append(
            Step(
                name=d.name,
                summary=d.summary,
                gpu_only=d.gpu_only,
                tags=d.tags,
                check=_render(f"{d.name}.check.sh.j2", ctx),
                apply=_render(f"{d.name}.apply.sh.j2", ctx),
                skip_reason=reason,
            )
        )
    return StepSet(
        prelude=_render("_prelude.sh.j2", ctx),
        steps=tuple(steps),
        fingerprint=stack.fingerprint,
        context=ctx,
    )
