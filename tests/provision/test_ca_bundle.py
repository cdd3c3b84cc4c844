"""--ca-bundle on a host that does not trust the TLS-inspecting proxy in front of it.

This machine reaches package indexes through a proxy that re-signs TLS with CAs kept in
/usr/local/share/ca-certificates. The host image here has only Debian's stock CAs, exactly like
a fresh VM behind a corporate proxy: pip's first download must fail without --ca-bundle and
succeed with it (apt, pip and uv all trust the system store the step extends).

Before any of that, the bundle is parsed as X.509 PEM (garbage, DER, empty, a private key, other
blocks, over 1 MiB: one line from every command that takes it, before anything is contacted or
created), and it travels as a file (uploaded, or shipped in uploads/), never inside a script.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dlenv.errors import UsageError
from dlenv.provision.manifest import load_stack
from dlenv.provision.options import ProvisionOptions, read_ca_bundle
from dlenv.provision.runner import provision
from dlenv.provision.steps import build_steps, upload_files
from dlenv.terminal import Terminal

LOCAL_CAS = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


@pytest.mark.docker
@pytest.mark.hosts
@pytest.mark.slow
@pytest.mark.skipif(not LOCAL_CAS, reason="no extra (TLS-inspecting proxy) CA on this machine")
def test_ca_bundle_makes_a_proxied_host_work(host_pool, tmp_path) -> None:
    from harness import NO_EXTRA_CA_IMAGE

    host = host_pool(NO_EXTRA_CA_IMAGE)
    # Decided before anything is provisioned: does this network re-sign TLS? The host (stock CAs
    # only) asks pip's default index, the one the python-env step reaches; curl's exit 60 is
    # "peer certificate cannot be authenticated with known CA certificates".
    from pip._internal.models.index import PyPI

    probe = host.exec(f"curl -sS -o /dev/null --max-time 30 {PyPI.simple_url}")
    if probe.returncode == 0:
        pytest.skip("this machine's network does not re-sign TLS: nothing to prove here")
    assert probe.returncode == 60, f"the index is unreachable from the host: {probe.stderr}"
    only = ("ca-bundle", "base-packages", "python-env")
    terminal = Terminal(interactive=False)
    [without] = provision([host.target()], ProvisionOptions(python="uv", only=only), terminal)
    assert not without.ok and without.failed_step == "python-env", without.error
    assert "CERTIFICATE_VERIFY_FAILED" in without.log_path.read_text()

    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("".join(p.read_text() for p in LOCAL_CAS))
    [with_ca] = provision(
        [host.target()], ProvisionOptions(python="uv", only=only, ca_bundle=bundle), terminal
    )
    assert with_ca.ok, with_ca.error
    assert with_ca.applied == ["ca-bundle", "python-env"]
    res = host.exec("cat /etc/pip.conf; /opt/dlenv/bin/uv --version")
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in res.stdout and "uv " in res.stdout


# -- the bundle is X.509 PEM, checked before anything is created -----------------------------
def _bad_bundles(pki) -> dict[str, tuple[bytes, str]]:
    """case -> (file content, what the one line must say)."""
    cert = pki.cert_pem("dlenv test CA").encode()
    return {
        "garbage": (b"not a certificate\n", "holds no PEM certificate"),
        "empty": (b"", "is empty"),
        "blank": (b"\n  \n", "is empty"),
        "der": (pki.cert_der("dlenv test CA"), "is DER (binary), not PEM"),
        "binary": (b"\xff\xfe\x00garbage", "is binary"),
        "private-key": (pki.key_pem().encode(), "contains a private key"),
        "cert-and-key": (cert + pki.key_pem().encode(), "contains a private key"),
        "rsa-key-label": (
            cert + b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "contains a private key",
        ),
        "other-block": (
            cert + b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
            "holds X509 CRL block(s), not only certificates",
        ),
        "broken-cert": (
            b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n",
            "has a certificate that does not parse",
        ),
        "too-large": (cert + b"#" * (1024 * 1024), "over the 1 MiB"),
    }


BAD_CASES = [
    "garbage",
    "empty",
    "blank",
    "der",
    "binary",
    "private-key",
    "cert-and-key",
    "rsa-key-label",
    "other-block",
    "broken-cert",
    "too-large",
]


def _write_bad(pki, tmp_path: Path, case: str) -> tuple[Path, str]:
    content, says = _bad_bundles(pki)[case]
    path = tmp_path / f"bad {case}.pem"  # a space in the name: the line still names it whole
    path.write_bytes(content)
    return path, says


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_bundle_is_one_usage_error(pki, tmp_path: Path, case: str) -> None:
    path, says = _write_bad(pki, tmp_path, case)
    with pytest.raises(UsageError) as err:
        ProvisionOptions(ca_bundle=path)
    assert says in err.value.message and str(path) in err.value.message
    assert "\n" not in err.value.message and err.value.hint


def test_a_directory_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a file"):
        ProvisionOptions(ca_bundle=tmp_path)


def test_a_valid_multi_cert_bundle_is_accepted_and_travels_as_a_file(pki, tmp_path: Path) -> None:
    # Text outside the PEM blocks is kept as it is (bundles carry `# Subject` comments), and even
    # text that looks like a heredoc delimiter plus a command stays inert: the bundle is never in
    # a script, only its sha256 and the fixed path it is read from.
    bundle = pki.bundle(tmp_path / "corp.pem", "corp root", "corp issuing")
    bundle.write_text(bundle.read_text() + "DLENV_PEM\ntouch /tmp/dlenv-ca-canary\nDLENV_EOF\n")
    text = read_ca_bundle(bundle)
    assert text == bundle.read_text().strip() + "\n" and text.count("BEGIN CERTIFICATE") == 2
    opts = ProvisionOptions(python="uv", ca_bundle=bundle)
    stack = load_stack()
    [step] = [s for s in build_steps(stack, opts).steps if s.name == "ca-bundle"]
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest in step.apply and digest in step.check
    assert "/opt/dlenv/uploads/dlenv-extra-ca.crt" in step.apply
    assert "touch /tmp/dlenv-ca-canary" not in step.apply + step.check
    assert "END CERTIFICATE" not in step.apply + step.check
    assert upload_files(stack, opts) == {"/opt/dlenv/uploads/dlenv-extra-ca.crt": text}


def _dlenv(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlenv", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def _one_line(proc: subprocess.CompletedProcess[str], says: str) -> None:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and says in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("case", BAD_CASES)
def test_cli_refuses_a_bad_bundle_before_connecting(pki, tmp_path: Path, case: str) -> None:
    path, says = _write_bad(pki, tmp_path, case)
    env = {"DLENV_STATE_DIR": str(tmp_path / "st ate"), "DLENV_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = _dlenv(
        "provision", "--host", "dlenv@127.0.0.1:1", "--ca-bundle", str(path), "--plan", env=env
    )
    _one_line(proc, says)
    assert "cannot reach" not in proc.stderr  # refused before any connection was tried
    logs = tmp_path / "st ate" / "logs"
    assert not logs.exists() or not any(logs.iterdir())


@pytest.mark.parametrize("case", ["garbage", "der", "cert-and-key", "too-large"])
def test_every_command_taking_a_bundle_refuses_it_first(pki, tmp_path: Path, case: str) -> None:
    """build (no engine needed), ami script (writes nothing), up / ami bake (no AWS call)."""
    path, says = _write_bad(pki, tmp_path, case)
    env = {
        "DLENV_STATE_DIR": str(tmp_path / "state"),
        "DLENV_CONFIG_DIR": str(tmp_path / "cfg"),
        "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
        # an endpoint nothing listens on: any AWS call would fail with another message
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    _one_line(_dlenv("build", "--cpu", "--ca-bundle", str(path), env=env), says)
    out = tmp_path / "ami-out"
    _one_line(_dlenv("ami", "script", "--out", str(out), "--ca-bundle", str(path), env=env), says)
    assert not out.exists()
    _one_line(_dlenv("up", "r1", "--yes", "--ca-bundle", str(path), env=env), says)
    _one_line(_dlenv("ami", "bake", "--yes", "--ca-bundle", str(path), env=env), says)


def test_ami_script_ships_the_bundle_as_a_file(pki, tmp_path: Path) -> None:
    bundle = pki.bundle(tmp_path / "corp.pem", "corp root")
    env = {"DLENV_STATE_DIR": str(tmp_path / "state"), "DLENV_CONFIG_DIR": str(tmp_path / "cfg")}
    out = tmp_path / "ami-out"
    proc = _dlenv("ami", "script", "--out", str(out), "--ca-bundle", str(bundle), env=env)
    assert proc.returncode == 0, proc.stderr
    shipped = out / "uploads" / "dlenv-extra-ca.crt"
    assert shipped.read_text() == bundle.read_text().strip() + "\n"
    script = (out / "provision.sh").read_text()
    assert "/opt/dlenv/uploads/dlenv-extra-ca.crt" in script
    assert "END CERTIFICATE" not in script


def test_ca_step_installs_the_uploaded_file_under_bash(pki, tmp_path: Path) -> None:
    """The rendered apply and check, run by real bash against a fake root (paths rewritten).

    Proves the step copies exactly the uploaded bytes, refuses a tampered upload, and that the
    check tells a changed bundle from the installed one (so a new bundle is applied again).
    """
    bundle = pki.bundle(tmp_path / "corp.pem", "corp root", "corp issuing")
    opts = ProvisionOptions(python="uv", ca_bundle=bundle)
    stack = load_stack()
    [step] = [s for s in build_steps(stack, opts).steps if s.name == "ca-bundle"]
    fake = tmp_path / "root"
    (fake / "etc/ssl/certs").mkdir(parents=True)
    (fake / "etc/ssl/certs/ca-certificates.crt").write_text("# system store\n")
    upload = fake / "opt/dlenv/uploads/dlenv-extra-ca.crt"
    upload.parent.mkdir(parents=True)
    upload.write_text(read_ca_bundle(bundle))

    def localize(body: str) -> str:
        for path in ("/usr/local/share", "/etc/", "/opt/dlenv/uploads"):
            body = body.replace(path, f"{fake}{path}")
        # no update-ca-certificates in the fake root: the step appends to the store itself
        return body.replace("command -v update-ca-certificates", "false")

    def run(body: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-eo", "pipefail", "-c", localize(body)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )

    assert run(step.check).returncode != 0
    assert run(step.apply).returncode == 0, run(step.apply).stderr
    assert run(step.check).returncode == 0
    installed = fake / "usr/local/share/ca-certificates/dlenv-extra.crt"
    assert installed.read_bytes() == upload.read_bytes()
    assert "corp issuing" in (fake / "etc/ssl/certs/ca-certificates.crt").read_text()

    upload.write_text(upload.read_text().replace("corp", "evil"))  # tampered / stale upload
    failed = run(step.apply)
    assert failed.returncode == 1 and "is not the --ca-bundle dlenv checked" in failed.stderr

    other = pki.bundle(tmp_path / "new.pem", "another root")
    [changed] = [
        s for s in build_steps(stack, opts.with_(ca_bundle=other)).steps if s.name == "ca-bundle"
    ]
    assert run(changed.check).returncode != 0  # a new bundle is pending again


@pytest.mark.docker
@pytest.mark.hosts
@pytest.mark.slow
def test_bundle_is_uploaded_installed_and_replaced_on_a_real_host(host_pool, tmp_path, pki) -> None:
    """Over real SSH: the bundle arrives as a file, the step installs exactly it, a re-run
    applies nothing, and a different bundle (same path) is uploaded and applied again."""
    host = host_pool()
    terminal = Terminal(interactive=False)
    first = pki.bundle(tmp_path / "first.pem", "first root", "first issuing")
    opts = ProvisionOptions(python="uv", only=("ca-bundle",), ca_bundle=first)
    [res] = provision([host.target()], opts, terminal)
    assert res.ok, res.error
    assert res.applied == ["ca-bundle"]
    text = read_ca_bundle(first)
    got = host.exec(
        "cat /opt/dlenv/uploads/dlenv-extra-ca.crt; echo @@; "
        "cat /usr/local/share/ca-certificates/dlenv-extra.crt; echo @@; "
        "stat -c %a /opt/dlenv/uploads/dlenv-extra-ca.crt"
    ).stdout.split("@@\n")
    assert got[0] == text and got[1] == text and got[2].strip() == "644"
    body = [ln for ln in text.splitlines() if ln and not ln.startswith(("#", "-----"))]
    store = host.exec("cat /etc/ssl/certs/ca-certificates.crt").stdout
    assert body[0] in store and body[-1] in store  # both certificates are in the system store

    [again] = provision([host.target()], opts, terminal)
    assert again.ok and again.applied == []

    second = pki.bundle(tmp_path / "second.pem", "second root")
    [changed] = provision([host.target()], opts.with_(ca_bundle=second), terminal)
    assert changed.ok, changed.error
    assert changed.applied == ["ca-bundle"]
    installed = host.exec("cat /usr/local/share/ca-certificates/dlenv-extra.crt").stdout
    assert installed == read_ca_bundle(second)


def test_image_build_context_ships_the_bundle_as_a_file(pki, tmp_path: Path) -> None:
    from dlenv.containers.context import assemble

    bundle = pki.bundle(tmp_path / "corp.pem", "corp root")
    ctx = assemble(load_stack(), "cpu", ca_bundle=bundle, into=tmp_path / "ctx")
    shipped = ctx.path / "uploads" / "dlenv-extra-ca.crt"
    assert shipped.read_text() == read_ca_bundle(bundle)
    assert "/opt/dlenv/uploads/dlenv-extra-ca.crt" in ctx.scripts["system.sh"]
    assert all("END CERTIFICATE" not in script for script in ctx.scripts.values())


def _prepared(pki: Any, tmp_path: Path) -> tuple[Path, Path, Path, Any]:
    """`dlenv ami script --ca-bundle` output whose scripts' root is a temp dir (prepare.sh reads
    it from provision.sh): (bundle, scripts dir, root, a function running ami/prepare.sh)."""
    from dlenv.paths import data_dir

    bundle = pki.bundle(tmp_path / "corp.pem", "corp root")
    env = {"DLENV_STATE_DIR": str(tmp_path / "state"), "DLENV_CONFIG_DIR": str(tmp_path / "cfg")}
    out = tmp_path / "scripts"
    proc = _dlenv("ami", "script", "--out", str(out), "--ca-bundle", str(bundle), env=env)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "opt-dlenv"
    script = out / "provision.sh"
    script.write_text(
        script.read_text().replace("export DLENV_ROOT=/opt/dlenv", f"export DLENV_ROOT={root}")
    )
    prepare = data_dir() / "ami" / "prepare.sh"

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(prepare)],
            capture_output=True,
            text=True,
            env={**os.environ, "DLENV_SCRIPTS": str(out), "DLENV_LOGIN_USER": "ubuntu"},
        )

    return bundle, out, root, run


def test_prepare_sh_refuses_a_directory_without_the_shipped_bundle(pki, tmp_path: Path) -> None:
    """ami/prepare.sh (Packer's step 2): a scripts directory that lost uploads/ is refused with
    one line, before anything is moved."""
    _, out, root, run = _prepared(pki, tmp_path)
    (out / "uploads" / "dlenv-extra-ca.crt").unlink()
    refused = run()
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "uploads/dlenv-extra-ca.crt is missing" in refused.stderr
    assert not (root / "uploads").exists()


@pytest.mark.skipif(
    os.geteuid() != 0, reason="prepare.sh moves files only as root (as Packer runs it)"
)
def test_prepare_sh_moves_the_shipped_bundle(pki, tmp_path: Path) -> None:
    """ami/prepare.sh moves the shipped bundle where provision.sh reads it."""
    bundle, _, root, run = _prepared(pki, tmp_path)
    moved = run()
    assert moved.returncode == 0, moved.stderr
    assert (root / "uploads" / "dlenv-extra-ca.crt").read_text() == read_ca_bundle(bundle)


def test_the_ansible_role_refuses_what_dlenv_refuses(pki, tmp_path: Path) -> None:
    """ansible/roles/ca_bundle checks the bundle first, with the same verdicts for the cases
    Ansible's filters can tell (runs the role's first task alone, on localhost, in a child)."""
    import yaml

    from dlenv.paths import data_dir

    playbook_bin = Path(sys.executable).parent / "ansible-playbook"
    if not playbook_bin.exists():
        pytest.fail(
            "ansible-playbook is not installed: run scripts/test (it installs the `test` extra)"
        )
    tasks = yaml.safe_load((data_dir() / "ansible/roles/ca_bundle/tasks/main.yml").read_text())
    check = tasks[0]["block"][0]
    assert check["ansible.builtin.assert"], "the role's first task is the bundle check"
    (tmp_path / "check.yml").write_text(yaml.safe_dump([check]))
    (tmp_path / "play.yml").write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [{"ansible.builtin.include_tasks": str(tmp_path / "check.yml")}],
                }
            ]
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}

    def verdict(path: Path) -> bool:
        proc = subprocess.run(
            [str(playbook_bin), "-i", "localhost,", str(tmp_path / "play.yml"),
             "-e", f"dlenv_ca_bundle={path}"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        return proc.returncode == 0

    assert verdict(pki.bundle(tmp_path / "good.pem", "a root", "an issuing CA"))
    for case in ("garbage", "private-key", "cert-and-key", "other-block", "too-large"):
        path, _ = _write_bad(pki, tmp_path, case)
        assert not verdict(path), case
