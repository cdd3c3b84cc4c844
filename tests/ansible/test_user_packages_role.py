"""The user_packages role writes byte for byte the file dlenv uploads and refuses what dlenv refuses.

No host: the role's own vars and check tasks run on the controller (connection local) through the
real ansible-playbook, and the result is compared with `dlenv.provision.options.user_packages`.
Equal text means an equal digest in <env>/.dlenv-user-packages, so after the playbook `dlenv
provision --requirements FILE` finds the user-packages step done (and the other way round).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ansible_support import ANSIBLE_DIR, REPO, clean_env, tool

from dlenv.errors import UsageError
from dlenv.provision.options import ProvisionOptions, user_packages

ROLE = ANSIBLE_DIR / "roles" / "user_packages"


def play(
    tmp_path: Path, requirements: Path, packages: list[str]
) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "uploaded.txt"
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        f"""- hosts: localhost
  gather_facts: false
  vars_files: [{ROLE / "vars" / "main.yml"}]
  vars:
    dlenv_requirements: {str(requirements)!r}
    dlenv_packages: {packages!r}
  tasks:
    - ansible.builtin.import_tasks: {ROLE / "tasks" / "check.yml"}
    - ansible.builtin.copy:
        content: "{{{{ user_packages_text }}}}"
        dest: {str(out)!r}
        mode: "0644"
"""
    )
    local = [
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
    ]
    return subprocess.run(
        [str(tool("ansible-playbook")), *local, str(playbook)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_role_uploads_what_dlenv_uploads(tmp_path) -> None:
    req = tmp_path / "my requirements.txt"
    req.write_text(
        "# my project\nsix==1.17.0\n--extra-index-url https://example.invalid/simple\n\n"
    )
    proc = play(tmp_path, req, ["idna ", "tqdm"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    ours = user_packages(
        ProvisionOptions(python="uv", requirements=req, packages=("idna ", "tqdm"))
    )
    assert (tmp_path / "uploaded.txt").read_text() == ours.requirements


@pytest.mark.parametrize(
    "line", ["-e ../mylib", "-r base.txt", "./dist/a.whl", "--install-option=x"]
)
def test_the_role_refuses_what_dlenv_refuses(tmp_path, line) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(f"six\n{line}\n")
    proc = play(tmp_path, req, [])
    assert proc.returncode != 0
    assert f"uses an option dlenv does not pass on: ['{line}']" in proc.stdout
    with pytest.raises(UsageError, match=r"requirements\.txt line 2"):
        ProvisionOptions(python="uv", requirements=req)
    assert not (tmp_path / "uploaded.txt").exists()


@pytest.mark.docker
@pytest.mark.hosts
@pytest.mark.slow
def test_dlenv_finds_the_playbooks_user_packages_done(provisioned_image, tmp_path) -> None:
    """Parity on a real host (from the provisioned image: dlenv's own provisioning, then the
    playbook on top, both ways round in one test): the playbook installs the file, `dlenv provision --plan` with the
    same file finds the user-packages step done (the same record), and a re-run changes nothing."""
    from ansible_support import host_entry, playbook, write_inventory

    from dlenv.provision.runner import provision
    from dlenv.terminal import Terminal
    from harness import start_host

    host = start_host(provisioned_image, work=tmp_path)
    try:
        req = tmp_path / "requirements.txt"
        req.write_text("six==1.17.0\n")
        tags = "base-packages,python-env,user-packages"
        inventory = write_inventory(
            tmp_path / "inventory.yml",
            {"h": host_entry(host, dlenv_python_manager="uv", dlenv_requirements=str(req))},
        )
        first = playbook(inventory, "--tags", tags, "-e", "dlenv_verify=false")
        assert first.returncode == 0, first.tail()
        # on a host dlenv provisioned, the playbook changes only what the user's packages need
        # (and hands the env to its user): base packages and the env are found as dlenv left them
        changed = first.changed_tasks()
        assert {t.split(" : ")[0] for t in changed} == {"user_packages", "dlenv"}, changed
        assert "user_packages : Install the requirements" in first.changed_tasks(), first.tail()
        probe = host.exec("/opt/dlenv/env/bin/python -c 'import six; print(six.__version__)'")
        assert probe.stdout.strip() == "1.17.0", probe.stderr

        only = tuple(tags.split(","))
        [res] = provision(
            [host.target()],
            ProvisionOptions(python="uv", requirements=req, only=only),
            Terminal(interactive=False),
            plan_only=True,
        )
        assert res.ok, res.error
        assert {s.name: s.status for s in res.plan if s.name in only} == dict.fromkeys(only, "done")
        again = playbook(inventory, "--tags", tags, "-e", "dlenv_verify=false")
        assert again.returncode == 0 and again.recap["h"]["changed"] == 0, again.changed_tasks()
    finally:
        host.stop()
