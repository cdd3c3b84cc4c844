"""The Packer channel (ami/): the template is valid for the Packer it targets (Debian 12's 1.6.6),
runs exactly the files `dlenv ami script` writes, and tags its image so `dlenv up` uses it.

`packer validate` with the amazon-ebs builder is offline in 1.6.6 (no AWS call, no credentials:
checked with strace), so these tests never reach AWS. `packer console` evaluates the template's
locals, which is how the tags are compared with what `dlenv ami bake` sets.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
AMI = REPO / "ami"
TEMPLATE = AMI / "dlenv.pkr.hcl"
SCRIPT_FILES = ("provision.sh", "cleanup.sh", "stack-fingerprint")
CIDR = "203.0.113.9/32"

needs_packer = pytest.mark.skipif(
    shutil.which("packer") is None,
    reason="packer is not installed (scripts/test installs Debian's packer 1.6.6)",
)


def _env(tmp: Path) -> dict[str, str]:
    """No user config, no real AWS credentials: fake ones, a throwaway HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DLENV_"))}
    (tmp / "home").mkdir(exist_ok=True)
    env.update(
        {
            "HOME": str(tmp / "home"),
            "DLENV_CONFIG_DIR": str(tmp / "config"),
            "DLENV_STATE_DIR": str(tmp / "state"),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "CHECKPOINT_DISABLE": "1",  # Packer's version check would call out
            "PACKER_CACHE_DIR": str(tmp / "packer-cache"),
        }
    )
    return env


def render(out: Path, *flags: str) -> Path:
    """What a user runs before `packer build`: `dlenv ami script --out DIR ...`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "dlenv", "ami", "script", "--out", str(out), *flags],
        capture_output=True,
        text=True,
        env=_env(out.parent),
        cwd=out.parent,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def render_for_user(out: Path, user: str, *flags: str) -> Path:
    """`dlenv ami script --user USER ...`."""
    return render(out, "--user", user, *flags)


@pytest.fixture(scope="module")
def gpu_scripts(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("gpu") / "scripts", "--python", "uv")


@pytest.fixture(scope="module")
def cpu_scripts(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("cpu") / "scripts", "--python", "conda", "--cpu")


def packer(*args: str, cwd: Path = REPO, input: str | None = None) -> subprocess.CompletedProcess:
    tmp = Path(tempfile.gettempdir()) / "dlenv-packer-test"
    tmp.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["packer", *args],
        capture_output=True,
        text=True,
        env=_env(tmp),
        cwd=cwd,
        input=input,
        timeout=120,
    )


def evaluate(expr: str, scripts: Path, *extra: str) -> object:
    """A template expression's value, through `packer console` (JSON-encoded)."""
    proc = packer(
        "console",
        "-var",
        f"scripts={scripts}",
        "-var",
        f"ssh_cidr={CIDR}",
        *extra,
        str(AMI),
        input=f"jsonencode({expr})\n",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the template is valid for Packer 1.6.6 -------------------------------------------------


@needs_packer
@pytest.mark.parametrize("variant", ["gpu_scripts", "cpu_scripts"])
def test_packer_validate_passes(variant, request):
    scripts = request.getfixturevalue(variant)
    proc = packer("validate", "-var", f"scripts={scripts}", "-var", f"ssh_cidr={CIDR}", str(AMI))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for base in ("ubuntu-22.04", "debian-12"):
        proc = packer(
            "validate",
            "-var", f"scripts={scripts}",
            "-var", f"ssh_cidr={CIDR}",
            "-var", f"base={base}",
            "-var", "spot=true",
            "-var", "source_ami=ami-0123456789abcdef0",
            str(AMI),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_packer
def test_packer_fmt_check_passes():
    proc = packer("fmt", "-check", "-diff", str(AMI))
    assert proc.returncode == 0, f"run `packer fmt ami/`:\n{proc.stdout}{proc.stderr}"


@needs_packer
def test_validate_names_what_is_missing(gpu_scripts, tmp_path):
    proc = packer("validate", str(AMI))
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "`dlenv ami script --out DIR`" in out and "-var scripts=DIR" in out
    assert "-var ssh_cidr=" in out
    proc = packer(
        "validate", "-var", f"scripts={gpu_scripts}", "-var", "ssh_cidr=0.0.0.0/0", str(AMI)
    )
    assert proc.returncode != 0 and "0.0.0.0/0 is refused" in " ".join(
        (proc.stdout + proc.stderr).split()
    )
    proc = packer("validate", "-var", f"scripts={gpu_scripts}", "-var", "ssh_cidr=::/0", str(AMI))
    assert proc.returncode != 0 and "so is ::/0" in " ".join((proc.stdout + proc.stderr).split())
    proc = packer(
        "validate", "-var", f"scripts={tmp_path}", "-var", f"ssh_cidr={CIDR}", str(AMI)
    )  # a directory without the scripts
    assert proc.returncode != 0 and "dlenv ami script" in proc.stdout + proc.stderr


# ---- it runs what `dlenv ami script` writes ---------------------------------------------------


def _provisioners(text: str) -> list[tuple[str, str]]:
    """(type, body) of each provisioner block of the build, in order."""
    build = text[text.index("\nbuild {") :]
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'\n  provisioner "([\w-]+)" \{', build)]
    return [
        (kind, build[pos : (starts[i + 1][0] if i + 1 < len(starts) else len(build))])
        for i, (pos, kind) in enumerate(starts)
    ]


def test_the_template_runs_the_files_dlenv_ami_script_writes(gpu_scripts):
    written = sorted(p.name for p in gpu_scripts.iterdir())
    assert written == sorted(SCRIPT_FILES)
    text = TEMPLATE.read_text()
    variables = (AMI / "variables.pkr.hcl").read_text()
    # every file the template reads from the scripts directory is one the command writes (the
    # wheelhouse/ a user adds for --wheelhouse is named only in an error message)
    read = set(re.findall(r"\$\{var\.scripts\}/([\w.-]+)", text + variables))
    assert read - {"wheelhouse"} == set(SCRIPT_FILES)
    steps = _provisioners(text)
    kinds = [k for k, _ in steps]
    assert "shell-local" not in kinds  # nothing is rendered behind the user's back
    # the whole directory is uploaded to one place, from which the scripts run as root
    (upload,) = [body for kind, body in steps if kind == "file"]
    assert 'source      = "${var.scripts}/"' in upload and "destination = local.remote" in upload
    ran = [
        (m.group(1) or f"ami/{m.group(2)}", body)
        for _, body in steps
        for m in re.finditer(
            r'bash \$\{local\.remote\}/([\w.-]+)|script\s+= "\$\{path\.root\}/([\w.-]+)"', body
        )
    ]
    assert [name for name, _ in ran] == [
        "ami/prepare.sh",
        "provision.sh",
        "provision.sh",  # again after the reboot (if any)
        "ami/verify.sh",
        "cleanup.sh",
    ]
    assert all((AMI / n.removeprefix("ami/")).is_file() for n, _ in ran if n.startswith("ami/"))
    # as root: the scripts refuse anything else
    assert all(re.search(r"execute_command\s+= local\.sudo(_vars)?\n", body) for _, body in ran)
    assert "sudo      = \"sudo bash -eu '{{ .Path }}'\"" in text
    # cleanup + validation is the last thing that runs on the builder
    assert steps[-1][1] is ran[-1][1]
    # the reboot between the two runs reacts to the marker provision.sh leaves
    provision = (gpu_scripts / "provision.sh").read_text()
    assert "touch /var/run/reboot-required" in provision
    (reboot,) = [body for _, body in steps if "systemctl reboot" in body]
    assert (
        re.search(r"expect_disconnect\s+= true\n", reboot)
        and "[ -e /var/run/reboot-required ]" in reboot
    )


def _run(script: str, scripts: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(AMI / script)],
        capture_output=True,
        text=True,
        env={**os.environ, "DLENV_SCRIPTS": str(scripts), **env},
    )


def test_scripts_default_to_the_base_images_login_user(gpu_scripts):
    assert re.search(
        r"^export DLENV_USER=ubuntu$", (gpu_scripts / "provision.sh").read_text(), re.M
    )


def test_prepare_refuses_scripts_rendered_for_another_user(tmp_path):
    """Scripts rendered for root: Jupyter would refuse to run as root and `dlenv up` logs in as
    ubuntu, so the build stops before provisioning anything."""
    scripts = render_for_user(tmp_path / "scripts", "root", "--python", "uv")
    assert re.search(r"^export DLENV_USER=root$", (scripts / "provision.sh").read_text(), re.M)
    res = _run("prepare.sh", scripts, DLENV_LOGIN_USER="ubuntu")
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1, res.stderr
    assert "rendered for user root, but this image's login user is ubuntu" in res.stderr
    assert "`dlenv ami script --user ubuntu`" in res.stderr


def test_prepare_refuses_a_wheelhouse_that_was_not_shipped(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    scripts = render_for_user(
        tmp_path / "w" / "scripts", "ubuntu", "--python", "uv", "--wheelhouse", str(wheels)
    )
    text = (scripts / "provision.sh").read_text()
    assert re.search(r"^export DLENV_WHEELHOUSE=/opt/dlenv/wheelhouse$", text, re.M)
    assert re.search(r"^export DLENV_ROOT=/opt/dlenv$", text, re.M)
    res = _run("prepare.sh", scripts, DLENV_LOGIN_USER="ubuntu")
    assert res.returncode == 1
    assert "copy the wheels into DIR/wheelhouse next to provision.sh" in res.stderr


@pytest.mark.skipif(
    os.path.exists("/var/lib/dlenv/steps/nvidia-driver")
    or os.path.exists("/var/run/reboot-required"),
    reason="this machine carries the markers verify.sh reads",
)
def test_verify_refuses_gpu_scripts_on_a_builder_without_gpu(gpu_scripts, cpu_scripts):
    res = _run("verify.sh", gpu_scripts)
    assert res.returncode == 1
    assert "the builder has no NVIDIA GPU" in res.stderr and "--cpu" in res.stderr
    res = _run("verify.sh", cpu_scripts)
    assert res.returncode == 0, res.stderr
    assert "verified: no reboot pending" in res.stdout


@needs_packer
def test_what_the_template_reads_from_the_scripts(gpu_scripts, cpu_scripts):
    from dlenv.provision.manifest import load_stack

    stack = load_stack()
    got = evaluate(
        "{python = local.python, gpu = local.gpu, stack = local.stack, "
        "driver = local.driver_branch, cuda = local.cuda}",
        gpu_scripts,
    )
    assert got == {
        "python": "uv",
        "gpu": True,
        "stack": stack.fingerprint,
        "driver": str(stack.get("nvidia.driver_branch")),
        "cuda": str(stack.get("cuda.version")),
    }
    got = evaluate("{python = local.python, gpu = local.gpu}", cpu_scripts)
    assert got == {"python": "conda", "gpu": False}


# ---- the image carries the tags `dlenv up` looks for ------------------------------------------


@needs_packer
def test_tags_are_the_ones_dlenv_ami_bake_sets(gpu_scripts):
    from dlenv.cloud.images import image_name
    from dlenv.ops.bake import image_tags
    from dlenv.provision.manifest import load_stack

    stack = load_stack()
    tags = evaluate("local.tags", gpu_scripts)
    bake = image_tags(
        stack=stack,
        settings=SimpleNamespace(ami="ubuntu-24.04"),
        options=SimpleNamespace(python="uv"),
        env=SimpleNamespace(os="ubuntu-24.04", user="ubuntu", image_id="ami-0123456789abcdef0"),
        versions={"torch": "2.13.0"},
        gpu=True,
        when=dt.datetime.now(dt.timezone.utc),
    )
    # what `dlenv up` (find_baked) and `dlenv ami list` read
    for key in ("dlenv:stack", "dlenv:base", "dlenv:python", "dlenv:os", "dlenv:user"):
        assert tags[key] == bake[key], key
    assert tags["dlenv:baked"] == "true"  # images.create adds it for the bake
    assert tags["dlenv:stack"] == (gpu_scripts / "stack-fingerprint").read_text().strip()
    for key in ("dlenv:gpu", "dlenv:driver-branch", "dlenv:cuda"):
        assert tags[key] == bake[key], key
    # every tag the bake sets, except the package versions only a finished host knows
    assert set(bake) - {"dlenv:torch"} <= set(tags)
    assert tags["dlenv:source-ami"] == "{{ .SourceAMI }}"  # Packer fills it in at build time
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", tags["dlenv:created"])
    created = dt.datetime.strptime(tags["dlenv:created"], "%Y-%m-%dT%H:%M:%SZ")
    assert tags["Name"] == image_name(stack.fingerprint, "ubuntu-24.04", "uv", created)
    for base, user in (("ubuntu-22.04", "ubuntu"), ("debian-12", "admin")):
        other = evaluate("local.tags", gpu_scripts, "-var", f"base={base}")
        assert (other["dlenv:base"], other["dlenv:os"], other["dlenv:user"]) == (base, base, user)


@needs_packer
def test_the_source_images_are_the_ones_dlenv_launches_from(gpu_scripts):
    from dlenv.cloud.ami import DISTROS

    bases = evaluate("local.bases", gpu_scripts)
    for spec, base in bases.items():
        distro = DISTROS[spec]
        assert base["owner"] == distro.owner, spec
        assert base["user"] == distro.user, spec
        assert base["name"] % "amd64" == distro.name_pattern.format(arch="amd64"), spec


@needs_packer
@pytest.mark.moto
def test_dlenv_up_picks_the_packer_image(gpu_scripts, tmp_path, monkeypatch):
    """An image made the way Packer makes it (create_image, then these tags) is what `up` uses."""
    from moto import mock_aws

    from awsfake import FAKE_ENV, seed_ubuntu

    tags = evaluate("local.tags", gpu_scripts)
    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DLENV_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ids = seed_ubuntu("us-east-1")
        from dlenv import config
        from dlenv.cloud import images
        from dlenv.cloud.session import Aws
        from dlenv.ops import lifecycle
        from dlenv.terminal import Terminal

        aws = Aws(region="us-east-1")
        inst = aws.ec2.run_instances(
            ImageId=ids["24.04"], MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge"
        )["Instances"][0]["InstanceId"]
        aws.ec2.stop_instances(InstanceIds=[inst])
        image_id = aws.ec2.create_image(InstanceId=inst, Name=tags["Name"])["ImageId"]
        tags["dlenv:source-ami"] = ids["24.04"]  # what {{ .SourceAMI }} becomes
        aws.ec2.create_tags(
            Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )
        listed = images.list_baked(aws)
        assert [b.image_id for b in listed] == [image_id]
        settings = config.load({"region": "us-east-1", "python": "uv"})
        picked = lifecycle.choose_image(aws, settings, "x86_64", Terminal(interactive=False))
        assert picked.id == image_id and picked.source == "baked" and picked.user == "ubuntu"


# ---- the scripts the template runs ----------------------------------------------------------


@pytest.mark.parametrize("variant", ["gpu_scripts", "cpu_scripts"])
@pytest.mark.parametrize("name", ["provision.sh", "cleanup.sh"])
def test_rendered_scripts_pass_bash_n(variant, name, request):
    path = request.getfixturevalue(variant) / name
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---- the provisioner chain for real: Packer 1.6.6 over SSH into a systemd host container ----

_NULL_SOURCE = """
variable "host_port" {
  type = string
}
variable "host_key" {
  type = string
}
variable "host_user" {
  type = string
}
source "null" "host" {
  ssh_host             = "127.0.0.1"
  ssh_port             = var.host_port
  ssh_username         = var.host_user
  ssh_private_key_file = var.host_key
}
"""


def _host_template(dest: Path) -> Path:
    """ami/ with the build pointed at an SSH host instead of EC2; every provisioner unchanged
    (only the 30 s wait for a reboot that a container never does is cut to 1 s)."""
    dest.mkdir()
    for path in [AMI / "variables.pkr.hcl", *AMI.glob("*.sh")]:
        shutil.copy(path, dest)
    text = TEMPLATE.read_text()
    assert text.count('sources = ["source.amazon-ebs.dlenv"]') == 1
    assert text.count('pause_before        = "30s"') == 1
    text = text.replace('sources = ["source.amazon-ebs.dlenv"]', 'sources = ["source.null.host"]')
    text = text.replace('pause_before        = "30s"', 'pause_before        = "1s"')
    (dest / "dlenv.pkr.hcl").write_text(text)
    (dest / "host.pkr.hcl").write_text(_NULL_SOURCE)
    return dest


def _validation_only(stack, options) -> str:
    """The bake's validation alone (no cleanup first), as `dlenv.provision.image` defines it."""
    from dlenv.provision.image import cleanup

    parts = cleanup(stack, options)
    return "\n".join(["set -euo pipefail", parts.prelude, parts.validate, ""])


@needs_packer
@pytest.mark.docker
@pytest.mark.hosts
@pytest.mark.slow
def test_packer_build_provisions_and_cleans_a_real_host(tmp_path):
    from dlenv.provision.manifest import load_stack
    from dlenv.provision.options import ProvisionOptions
    from docker_support import find_wheelhouse
    from harness import hosts

    hosts.require_engine()
    hosts.ensure_images()
    wheels = find_wheelhouse()
    scripts = render_for_user(
        tmp_path / "render" / "scripts", "ubuntu", "--python", "uv", "--cpu", "--wheelhouse",
        str(wheels),
    )  # fmt: skip
    (scripts / "wheelhouse").mkdir()
    for wheel in wheels.glob("*.whl"):
        try:
            os.link(wheel, scripts / "wheelhouse" / wheel.name)
        except OSError:
            shutil.copy(wheel, scripts / "wheelhouse" / wheel.name)
    template = _host_template(tmp_path / "template")
    # own apt cache: the shared one is locked while another host container installs
    h = hosts.start_host(work=tmp_path, shared_caches=False)
    try:
        # the image's login user (dlenv:user, what the scripts are rendered for) is `ubuntu`
        h.exec("useradd -m -s /bin/bash ubuntu", check=True)
        proc = subprocess.run(
            [
                "packer", "build", "-color=false",
                "-var", f"scripts={scripts}",
                "-var", f"ssh_cidr={CIDR}",
                "-var", f"host_port={h.port}",
                "-var", f"host_key={h.key}",
                "-var", f"host_user={hosts.USER}",
                str(template),
            ],
            capture_output=True, text=True, env=_env(tmp_path), timeout=840,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-6000:]
        assert "wheelhouse uploaded to /opt/dlenv/wheelhouse" in out
        fingerprint = (scripts / "stack-fingerprint").read_text().strip()
        # twice: the run after the (here skipped) reboot too
        assert out.count(f"[dlenv] stack {fingerprint} provisioned") == 2
        assert "python-env: already done" in out  # ... which found everything in place
        assert "verified: no reboot pending" in out
        assert "image-cleanup: validated, nothing instance-specific is left" in out
        state = h.exec(
            "ls /etc/ssh/ssh_host_* /home/*/.ssh/authorized_keys /var/tmp/dlenv-ami "
            "/opt/dlenv/wheelhouse 2>&1; stat -c '%U' /opt/dlenv/env; "
            "cut -d' ' -f1 /var/lib/dlenv/steps/pytorch; wc -c < /etc/machine-id"
        ).stdout
        for gone in ("/etc/ssh/ssh_host_*", "/home/*/.ssh/authorized_keys", "/var/tmp/dlenv-ami"):
            assert f"cannot access '{gone}'" in state, state
        assert "cannot access '/opt/dlenv/wheelhouse'" in state, state
        owner, recorded, machine_id = state.strip().splitlines()[-3:]
        assert owner == "ubuntu"
        assert recorded == fingerprint
        assert machine_id == "0"

        # A host dirtied after the cleanup fails the validation, naming what is left.
        stack = load_stack()
        validation = _validation_only(stack, ProvisionOptions(python="uv", cpu=True))
        assert h.exec(validation).returncode == 0
        h.exec(
            "install -d -o dlenv /home/dlenv/.ssh && echo 'ssh-ed25519 AAAA x' "
            "> /home/dlenv/.ssh/authorized_keys"
        )
        res = h.exec(validation)
        assert res.returncode == 1
        assert "still in the image: authorized keys /home/dlenv/.ssh/authorized_keys" in res.stdout

        # What the cleanup cannot undo fails cleanup.sh itself: a copy of the build's token.
        h.exec(
            "mkdir -p /etc/dlenv && echo build-token-0123456789 > /etc/dlenv/jupyter-token "
            "&& echo 'token=build-token-0123456789' > /root/notes.txt"
        )
        subprocess.run(
            ["docker", "cp", str(scripts / "cleanup.sh"), f"{h.container}:/root/cleanup.sh"],
            check=True,
        )
        res = h.exec("bash /root/cleanup.sh")
        assert res.returncode == 1, res.stdout + res.stderr
        assert "the build's Jupyter token in: /root/notes.txt" in res.stdout
        assert "image-cleanup: FAILED validation" in res.stdout
    finally:
        h.stop()
