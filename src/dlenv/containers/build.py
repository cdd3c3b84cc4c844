"""Build the notebook image, with a live view and actionable failures.

Two builders, one behaviour: BuildKit through the docker CLI's buildx (`--progress=plain`, parsed
by `BuildKitProgress`) when it is installed, else the engine's classic builder through the Docker
SDK (`BuildProgress`). Same Dockerfile, same tags and labels, same one-line errors; BuildKit is
preferred because its cold build of this image took about half the time here.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlenv.containers import images
from dlenv.containers.context import (
    UserFiles,
    assemble,
    check_pem,
    check_wheelhouse,
    provision_options,
)
from dlenv.containers.progress import BuildKitProgress, BuildProgress, BuildResult
from dlenv.errors import DockerError, UsageError
from dlenv.terminal import Terminal

if TYPE_CHECKING:
    import docker

PULL_FAILURE = re.compile(
    r"pull access denied|repository does not exist|manifest unknown|manifest for .* not found|"
    r"not found: manifest|no such host|dial tcp|i/o timeout|invalid reference format|"
    r"No such image|unauthorized|toomanyrequests|failed to resolve source metadata|"
    r"failed to do request|not found",
    re.IGNORECASE,
)
# legacy: "The command '...' returned a non-zero code: 1"; BuildKit: "process ... did not complete
# successfully: exit code: 1" or "executor failed running [...]: exit code: 1"
NONZERO = re.compile(r"(?:returned a non-zero code|exit code):? (\d+)\s*$")
# What the rendered provision script prints per step (dlenv.provision.render's log lines).
PROVISION_STEP = re.compile(r"^\[dlenv\] ([a-z0-9-]+): (?:applying|FAILED)")


@dataclass
class BuildRequest:
    device: str = "gpu"
    tag: str | None = None
    base_image: str | None = None
    wheelhouse: Path | None = None
    ca_bundle: Path | None = None
    devel: bool = False
    no_cache: bool = False
    user_files: UserFiles = field(default_factory=UserFiles)
    """The user's own packages baked in (--requirements, --conda-env, dlenv.toml packages)."""
    frameworks: tuple[str, ...] = ()
    """More frameworks as their own kernels baked in (--frameworks tensorflow,jax)."""

    def __post_init__(self) -> None:  # bad input fails before any engine is contacted
        if self.device not in {"gpu", "cpu"}:
            raise UsageError(f"device {self.device!r} is not gpu or cpu")
        if self.devel and self.device != "gpu":
            raise UsageError("--devel is a GPU image", "drop --cpu, or drop --devel")
        if self.tag:
            _check_tag(self.tag)
        if self.wheelhouse is not None:
            check_wheelhouse(self.wheelhouse)
        if self.ca_bundle is not None:
            check_pem(self.ca_bundle)
        if self.user_files:
            user_digest(self.device, self.user_files)  # every file and line checked now
        if self.frameworks:
            from dlenv.provision.options import check_frameworks

            check_frameworks(self.frameworks)


def user_digest(device: str, user_files: UserFiles) -> str:
    """The digest of the user's checked packages as an image build installs them."""
    from dlenv.provision.options import user_packages

    return user_packages(provision_options(device, None, None, user_files=user_files)).digest


def image_tags(fingerprint: str, req: BuildRequest) -> list[str]:
    """Tags of a build: the stack's two, or, with the user's packages, one of their own
    (`<fingerprint>-<variant>-u<digest>`) that leaves the plain stack images (and latest-*) be;
    `dlenv local up --requirements FILE` runs exactly that tag."""
    if req.user_files or req.frameworks:
        # `-<framework>...` (sorted) then `-u<digest>`: each combination is an image of its own
        tag = images.stack_tag(fingerprint, req.device, req.devel)
        tag += "".join(f"-{name}" for name in sorted(set(req.frameworks)))
        if req.user_files:
            tag += f"-u{user_digest(req.device, req.user_files)}"
        tags = [tag]
    else:
        tags = images.tags_for(fingerprint, req.device, req.devel)
    if req.tag:
        tags.insert(0, req.tag)
    return tags


@dataclass
class BuiltImage:
    image_id: str
    tags: list[str]
    seconds: float
    fingerprint: str


def build_image(client: docker.DockerClient, terminal: Terminal, req: BuildRequest) -> BuiltImage:
    """Assemble the context, build it, tag it; raise DockerError with the failing step on error."""
    from dlenv.provision.manifest import load_stack

    stack = load_stack()
    base = images.base_image_for(req.base_image, req.devel)
    tags = image_tags(stack.fingerprint, req)
    labels = _labels(stack, req, base)

    ctx = assemble(
        stack,
        req.device,
        wheelhouse=req.wheelhouse,
        ca_bundle=req.ca_bundle,
        user_files=req.user_files,
        frameworks=req.frameworks,
    )
    start = time.monotonic()
    try:
        terminal.info(
            f"building {tags[0]} ({images.variant(req.device, req.devel)}, stack "
            f"{stack.fingerprint}) from {base}"
        )
        if not _image_present(client, base):
            terminal.note(f"base image {base} is not on this machine: the engine will pull it")
        result = _run_build(
            client, terminal, ctx.path, base, labels, tags[0], req.no_cache, target=req.device
        )
    finally:
        ctx.cleanup()
    if not result.ok:
        raise _failure(result, base, terminal)
    assert result.image_id is not None
    for ref in tags[1:]:
        repo, _, tag = ref.rpartition(":")
        client.api.tag(result.image_id, repo, tag, force=True)
    seconds = time.monotonic() - start
    size = client.images.get(result.image_id).attrs.get("Size", 0)
    terminal.success(f"built {', '.join(tags)} in {seconds:.0f}s ({size / 1e9:.2f} GB)")
    return BuiltImage(
        image_id=result.image_id, tags=tags, seconds=seconds, fingerprint=stack.fingerprint
    )


TAG_RE = re.compile(
    r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?"  # optional registry host[:port]/
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
)


def write_context(req: BuildRequest, into: Path) -> tuple[Path, list[str]]:
    """Write the build context to `into` and return the equivalent `docker build` command line
    (for BuildKit/buildx users: multi-arch builds, pushing to a registry, CI caches)."""
    from dlenv.provision.manifest import load_stack

    stack = load_stack()
    base = images.base_image_for(req.base_image, req.devel)
    tags = image_tags(stack.fingerprint, req)
    ctx = assemble(
        stack,
        req.device,
        wheelhouse=req.wheelhouse,
        ca_bundle=req.ca_bundle,
        into=into,
        user_files=req.user_files,
        frameworks=req.frameworks,
    )
    cmd = ["docker", "build", "--target", req.device, "--build-arg", f"BASE_IMAGE={base}"]
    for ref in tags:
        cmd += ["--tag", ref]
    for key, value in _labels(stack, req, base).items():
        cmd += ["--label", f"{key}={value}"]
    if req.no_cache:
        cmd.append("--no-cache")
    cmd.append(str(ctx.path))
    return ctx.path, cmd


def _labels(stack: Any, req: BuildRequest, base: str) -> dict[str, str]:
    labels = images.labels_for(stack, req.device, req.devel, base)
    if req.user_files:
        labels["io.dlenv.user-packages"] = user_digest(req.device, req.user_files)
    if req.frameworks:
        labels["io.dlenv.frameworks"] = ",".join(sorted(set(req.frameworks)))
    return labels


def _check_tag(tag: str) -> None:
    if not TAG_RE.fullmatch(tag):
        raise UsageError(
            f"--tag {tag!r} is not a valid image reference",
            "use lower-case [REGISTRY/]NAME[:TAG], e.g. --tag myorg/notebook:1",
        )


def _image_present(client: docker.DockerClient, ref: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref)
        return True
    except ImageNotFound:
        return False
    except Exception:
        return False


def builder_backend() -> str:
    """`buildkit` (the docker CLI's buildx: about twice as fast here, and what `docker build`
    uses) when available, else `legacy` (the engine's classic builder through the Docker SDK).
    DLENV_BUILDER=legacy|buildkit forces one."""
    import shutil
    import subprocess

    forced = os.environ.get("DLENV_BUILDER", "").strip().lower()
    if forced in {"legacy", "buildkit"}:
        return forced
    if shutil.which("docker") is None:
        return "legacy"
    try:
        probe = subprocess.run(["docker", "buildx", "version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "legacy"
    return "buildkit" if probe.returncode == 0 else "legacy"


def _run_build(
    client: docker.DockerClient,
    terminal: Terminal,
    path: Path,
    base: str,
    labels: dict[str, str],
    tag: str,
    no_cache: bool,
    target: str,
) -> BuildResult:
    if builder_backend() == "buildkit":
        return _run_buildkit(terminal, path, base, labels, tag, no_cache, target)
    from docker.errors import APIError

    progress = BuildProgress(terminal)
    try:
        stream = client.api.build(
            path=str(path),
            dockerfile="Dockerfile",
            tag=tag,
            buildargs={"BASE_IMAGE": base},
            target=target,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            nocache=no_cache,
            decode=True,
        )
        for event in stream:
            progress.feed(event)
    except APIError as exc:
        progress.feed({"error": exc.explanation or str(exc)})
    except KeyboardInterrupt:
        progress.close()
        raise
    return progress.close()


def _run_buildkit(
    terminal: Terminal,
    path: Path,
    base: str,
    labels: dict[str, str],
    tag: str,
    no_cache: bool,
    target: str,
) -> BuildResult:
    import subprocess
    import tempfile

    iid = Path(tempfile.mkdtemp(prefix="dlenv-iid-")) / "iid"
    cmd = [
        "docker",
        "buildx",
        "build",
        "--progress=plain",
        "--load",
        "--target",
        target,
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--tag",
        tag,
        "--iidfile",
        str(iid),
    ]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    if no_cache:
        cmd.append("--no-cache")
    cmd.append(str(path))
    progress = BuildKitProgress(terminal)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            progress.feed_line(line)
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        progress.close()
        raise
    result = progress.close()
    if code == 0 and iid.is_file():
        result.image_id = iid.read_text().strip()
    elif result.error is None:
        result.error = f"docker buildx build exited {code}"
    iid.unlink(missing_ok=True)
    iid.parent.rmdir()
    return result


def _failure(result: BuildResult, base: str, terminal: Terminal) -> DockerError:
    error = result.error or "the engine returned no image"
    step = result.failed_step
    first_line = error.splitlines()[0] if error else error
    code = NONZERO.search(first_line)
    if code:  # the engine repeats the whole RUN line before the code: keep just the code
        first_line = f"exit code {code[1]}"
    at_base = step is None or step.instruction.upper().startswith(("FROM", "LOAD METADATA"))
    if at_base and PULL_FAILURE.search(error):
        return DockerError(
            f"base image {base} is not on this machine and could not be pulled "
            f"({first_line[:160]})",
            "check the name (`docker images`), pull it (`docker pull IMG`), or pass "
            "--base-image with a Debian/Ubuntu image you have",
        )
    if step is None:
        return DockerError(
            f"the build failed before any step ran: {first_line}",
            "re-run with --debug; check the engine with `docker info`",
        )
    lines = list(step.lines)[-15:]
    provision_step = _provision_step(list(step.lines))
    if lines:
        terminal.info(f"--- last lines of step {step.name} ---")
        for line in lines:
            terminal.info(f"    {line}")
    where = f"step {step.name} ({step.label})"
    if provision_step:
        where += f", provision step {provision_step}"
    return DockerError(
        f"build failed at {where}: {first_line[:300]}",
        "fix the cause in the lines above and run the same command again "
        "(finished layers are cached); --no-cache rebuilds everything",
    )


def _provision_step(lines: list[str]) -> str | None:
    for line in reversed(lines):
        match = PROVISION_STEP.match(line.strip())
        if match:
            return match[1]
    return None
