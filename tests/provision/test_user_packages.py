"""Your own packages (--requirements, --conda-env, dlenv.toml packages): checks, steps, channels.

No host here: every bad file is refused with one line before anything is contacted, the rendered
step reads the uploaded file by path (pinned by sha256) and never holds its content, and the
step's digest moves with the file (so a changed file re-runs just that step). The host, image
and notebook tests are tests/provision/test_user_packages_host.py and
tests/docker/test_user_packages_image.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dlenv import config
from dlenv.errors import UsageError
from dlenv.provision.manifest import load_stack
from dlenv.provision.options import (
    CONDA_ENV_UPLOAD,
    REQUIREMENTS_UPLOAD,
    ProvisionOptions,
    user_packages,
)
from dlenv.provision.render import render_script, write_uploads
from dlenv.provision.steps import build_steps, upload_files

STACK = load_stack()
TORCH = STACK.get("packages.torch")


def reqs(tmp_path: Path, text: str | bytes, name: str = "requirements.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def refused(**kw: object) -> str:
    with pytest.raises(UsageError) as err:
        ProvisionOptions(**kw)  # type: ignore[arg-type]
    line = err.value.one_line()
    assert "\n" not in str(err.value) and err.value.hint, line
    return line


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("-e ../mylib\n", "`-e ../mylib` installs a local path (../mylib)"),
        ("--editable=./pkg\n", "installs a local path (./pkg)"),
        ("-r other.txt\n", "includes other.txt, which does not exist on the host"),
        ("-c constraints.txt\n", "includes constraints.txt"),
        ("--requirement=../base.txt\n", "includes ../base.txt"),
        ("-f ./wheels\n", "points at a local folder"),
        ("./dist/mylib-1.0.whl\n", "`./dist/mylib-1.0.whl` is a local path"),
        ("/home/me/mylib\n", "is a local path"),
        ("mylib @ file:///home/me/mylib\n", "is a local path"),
        ("six\n--install-option=--prefix=/x\n", "line 2: option --install-option is not one"),
        ("six $(touch /tmp/pwned)\n", "is not a requirement"),
        ("torch==2.0.0\n", f"`torch==2.0.0` would replace the stack's torch {TORCH}"),
        ("numpy<2\n", "would replace the stack's numpy"),
        ("torch @ https://example.invalid/torch.whl\n", "would replace the stack's torch"),
    ],
)
def test_a_line_naming_this_machine_or_moving_a_pin_is_refused(tmp_path, text, says) -> None:
    line = refused(python="uv", requirements=reqs(tmp_path, text))
    assert says in line and "requirements.txt line" in line


def test_what_an_index_can_serve_is_accepted(tmp_path) -> None:
    text = (
        "# a comment\n"
        "six==1.17.0  # trailing comment\n"
        "idna>=3 ; python_version >= '3.8'\n"
        "--extra-index-url https://example.invalid/simple\n"
        "-e git+https://example.invalid/me/lib.git#egg=lib\n"
        f"torch>={TORCH.split('.')[0]}\n"  # a pin the stack's version satisfies is fine
        "requests[socks] \\\n    ==2.32.3\n"
    )
    opts = ProvisionOptions(python="uv", requirements=reqs(tmp_path, text))
    assert user_packages(opts).requirements == f"# from requirements.txt\n{text.rstrip()}\n"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"six\n" * 70_000, "over the 256 KiB"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "is binary, not a UTF-8 text file"),
        (b"six\x00\n", "holds a control character"),
        (b"six\x1b[2J\n", "holds a control character"),
    ],
)
def test_huge_or_binary_files_are_refused(tmp_path, content, says) -> None:
    assert says in refused(python="uv", requirements=reqs(tmp_path, content))


def test_a_missing_file_is_one_line(tmp_path) -> None:
    assert "is not a file" in refused(python="uv", requirements=tmp_path / "nope.txt")


def test_a_hostile_file_name_never_becomes_a_line(tmp_path) -> None:
    path = reqs(tmp_path, "six\n", name="x\n-e ..;$(touch pwned).txt")
    text = user_packages(ProvisionOptions(python="uv", requirements=path)).requirements
    assert text.splitlines() == ["# from x_-e_..___touch_pwned_.txt", "six"]


def test_packages_entries_are_checked_like_lines() -> None:
    assert "packages entry 2" in refused(python="uv", packages=("six", "-e ../x"))
    assert "packages entry 1 ('../lib') is a local path" in refused(
        python="uv", packages=("../lib",)
    ) or "`../lib` is a local path" in refused(python="uv", packages=("../lib",))
    assert "would replace the stack's numpy" in refused(python="uv", packages=("numpy==1.0",))
    text = user_packages(ProvisionOptions(python="uv", packages=("six", "idna==3.10"))).requirements
    assert text == "# packages\nsix\nidna==3.10\n"


ENV_YML = """name: research
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip
  - conda-forge::libxml2>=2.12
  - pip:
      - six==1.17.0
"""


def test_conda_env_splits_into_conda_and_pip_parts(tmp_path) -> None:
    path = reqs(tmp_path, ENV_YML, name="environment.yml")
    got = user_packages(ProvisionOptions(python="conda", conda_env=path))
    assert "conda-forge::libxml2>=2.12" in got.conda_env and "research" not in got.conda_env
    assert "python" not in got.conda_env and "six" not in got.conda_env
    assert got.requirements == "# pip: of environment.yml\nsix==1.17.0\n"
    steps = {
        s.name: s for s in build_steps(STACK, ProvisionOptions(python="conda", conda_env=path))
    }
    apply = steps["user-packages"].apply
    assert f"/opt/dlenv/uploads/{CONDA_ENV_UPLOAD}" in apply and "conda env update" in apply
    assert "libxml2" not in apply  # the content is a file, never part of the script


@pytest.mark.parametrize(
    ("python", "text", "says"),
    [
        (
            "uv",
            ENV_YML,
            "lists conda packages (conda-forge::libxml2>=2.12), which need a conda env",
        ),
        ("conda", "dependencies: [python=3.12]\n", "python=3.12 differs from the stack's Python"),
        ("conda", "dependencies: [pytorch]\n", "pytorch would replace the stack's torch"),
        ("conda", "dependencies: [numpy]\n", "numpy would replace the stack's numpy"),
        ("conda", "dependencies: ['x; rm -rf /']\n", "is not a conda spec"),
        ("conda", "variables: {A: b}\n", "variables is not supported"),
        ("conda", "dependencies: [a\n", "is not valid YAML"),
        ("conda", "- just\n- a list\n", "is not a mapping"),
        ("conda", "dependencies:\n  - pip:\n      - -e ../x\n", "installs a local path"),
    ],
)
def test_bad_conda_env_files_are_refused(tmp_path, python, text, says) -> None:
    path = reqs(tmp_path, text, name="environment.yml")
    assert says in refused(python=python, conda_env=path)


def test_a_pip_only_env_file_works_under_uv(tmp_path) -> None:
    path = reqs(tmp_path, "dependencies:\n  - python=3.11\n  - pip:\n    - six\n", "env.yml")
    got = user_packages(ProvisionOptions(python="uv", conda_env=path))
    assert (got.conda_env, got.requirements) == ("", "# pip: of env.yml\nsix\n")


def test_the_step_reads_the_uploaded_file_pinned_by_sha256(tmp_path) -> None:
    import hashlib

    path = reqs(tmp_path, "six==1.17.0\n")
    opts = ProvisionOptions(python="uv", requirements=path)
    [step] = [s for s in build_steps(STACK, opts) if s.name == "user-packages"]
    uploads = upload_files(STACK, opts)
    remote = f"/opt/dlenv/uploads/{REQUIREMENTS_UPLOAD}"
    assert list(uploads) == [remote]
    digest = hashlib.sha256(uploads[remote].encode()).hexdigest()
    assert f"src={remote}" in step.apply and f'dlenv_user_file "$src" {digest}' in step.apply
    assert "six" not in step.apply and "six" not in step.check
    assert '--constraint "$constraints" -r "$src"' in step.apply
    for pin in ("torch", "numpy", "jupyterlab"):
        assert pin in step.apply.split("for dist in ")[1].split(";")[0].split()
    # the single-script channels (Dockerfile, Packer) get the same file in uploads/
    assert write_uploads(STACK, opts, tmp_path / "ctx") == [REQUIREMENTS_UPLOAD]
    assert (tmp_path / "ctx" / "uploads" / REQUIREMENTS_UPLOAD).read_text() == uploads[remote]
    assert "# ---- step: user-packages" in render_script(STACK, opts)


def test_a_changed_file_changes_only_that_steps_digest(tmp_path) -> None:
    path = reqs(tmp_path, "six==1.17.0\n")
    before = {s.name: s.digest for s in build_steps(STACK, ProvisionOptions(requirements=path))}
    path.write_text("six==1.16.0\n")
    after = {s.name: s.digest for s in build_steps(STACK, ProvisionOptions(requirements=path))}
    assert {n for n in before if before[n] != after[n]} == {"user-packages"}
    plain = {s.name for s in build_steps(STACK, ProvisionOptions())}
    assert "user-packages" not in plain and set(before) - plain == {"user-packages"}


def test_dlenv_toml_packages_need_trust_and_paths_are_relative_to_it(tmp_path, monkeypatch):
    user, project = tmp_path / "user", tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    user.mkdir()
    monkeypatch.setenv("DLENV_CONFIG_DIR", str(user))
    monkeypatch.chdir(project / "sub")
    (project / "dlenv.toml").write_text(
        'instance = "g5.xlarge"\nrequirements = "requirements.txt"\npackages = ["six"]\n'
    )
    s = config.load({}, env={})
    assert (s.instance, s.requirements, s.packages) == ("g5.xlarge", None, [])
    assert "ignoring requirements, packages" in s.notices[0]
    config.trust(project / "dlenv.toml")
    s = config.load({}, env={})
    assert s.requirements == str(project / "requirements.txt") and s.packages == ["six"]
    s = config.load({}, env={"DLENV_PACKAGES": "six, idna==3.10"})
    assert s.packages == ["six", "idna==3.10"]
    (user / "dlenv.toml").write_text("packages = 5\n")
    (project / "dlenv.toml").unlink()
    with pytest.raises(UsageError, match="packages = 5 is not a list of strings"):
        config.load({}, env={})


def test_the_cli_refuses_a_bad_file_in_one_line_before_any_host(tmp_path) -> None:
    bad = reqs(tmp_path, "-e ../mylib\n")
    for argv in (
        ["provision", "--host", "nobody@192.0.2.1", "--requirements", str(bad)],
        ["build", "--cpu", "--context", str(tmp_path / "ctx"), "--requirements", str(bad)],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "dlenv", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "DLENV_STATE_DIR": str(tmp_path / "state")},
        )
        assert proc.returncode == 2, proc.stderr
        assert "`-e ../mylib` installs a local path" in proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1
    assert not (tmp_path / "ctx").exists()


def test_a_build_context_bakes_them_in_a_layer_of_its_own(tmp_path) -> None:
    from dlenv.containers.build import BuildRequest, image_tags, write_context
    from dlenv.containers.context import UserFiles

    path = reqs(tmp_path, "six==1.17.0\n")
    req = BuildRequest(device="cpu", user_files=UserFiles(requirements=path))
    ctx, cmd = write_context(req, tmp_path / "ctx")
    assert "# ---- step: user-packages" in (ctx / "user.sh").read_text()
    assert "user-packages" not in (ctx / "stack.sh").read_text()
    assert (ctx / "user-uploads" / REQUIREMENTS_UPLOAD).read_text().endswith("six==1.17.0\n")
    assert not (ctx / "uploads" / REQUIREMENTS_UPLOAD).exists()  # the system layer's folder
    assert "COPY user-uploads/ /opt/dlenv/uploads/" in (ctx / "Dockerfile").read_text()
    [tag] = image_tags(STACK.fingerprint, req)
    assert tag.startswith(f"dlenv/notebook:{STACK.fingerprint}-cpu-u") and "latest" not in cmd
    assert any(a.startswith("io.dlenv.user-packages=") for a in cmd)
    path.write_text("six==1.16.0\n")
    assert image_tags(STACK.fingerprint, req) != [tag]  # another file, another image
    plain = BuildRequest(device="cpu")
    assert image_tags(STACK.fingerprint, plain)[1] == "dlenv/notebook:latest-cpu"


def test_a_baked_ami_is_tagged_with_the_digest_the_step_records(tmp_path) -> None:
    import datetime as dt
    from types import SimpleNamespace

    from dlenv.ops.bake import image_tags as ami_tags

    path = reqs(tmp_path, "six==1.17.0\n")
    opts = ProvisionOptions(python="uv", requirements=path)
    env = SimpleNamespace(os="ubuntu-24.04", user="ubuntu", image_id="ami-0123456789abcdef0")
    tags = ami_tags(
        stack=STACK,
        settings=config.Settings(),
        options=opts,
        env=env,
        versions={},
        gpu=False,
        when=dt.datetime(2026, 1, 1),
    )
    [step] = [s for s in build_steps(STACK, opts) if s.name == "user-packages"]
    assert tags["dlenv:user-packages"] == user_packages(opts).digest
    assert f"= {tags['dlenv:user-packages']} ]" in step.check
    plain = ami_tags(
        stack=STACK,
        settings=config.Settings(),
        options=ProvisionOptions(python="uv"),
        env=env,
        versions={},
        gpu=False,
        when=dt.datetime(2026, 1, 1),
    )
    assert "dlenv:user-packages" not in plain
