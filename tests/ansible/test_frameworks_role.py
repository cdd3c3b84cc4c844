"""The frameworks role reaches the end state of dlenv's `frameworks` step, on a real host.

On a host from the provisioned image (dlenv's own provisioning: base packages, the uv env and the
Lab are found as dlenv left them, so the playbook changes only the framework, the Lab's kernel
list and the hand-over), the playbook (tags base-packages .. frameworks, dlenv_frameworks: [jax],
uv) installs JAX's CPU build into its own env and registers the "JAX" kernel; `dlenv provision
--plan --frameworks jax` then finds every one of those steps done (same env, same record, same
kernelspec, the same Lab config listing the kernel), and a second playbook run changes nothing.
An unknown name is refused by the role in one message listing the stack's frameworks.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]
TAGS = "base-packages,python-env,jupyterlab,frameworks"


def test_dlenv_finds_the_playbooks_frameworks_done(provisioned_image, tmp_path) -> None:
    from ansible_support import host_entry, playbook, write_inventory

    from dlenv.provision.options import ProvisionOptions
    from dlenv.provision.runner import provision
    from dlenv.terminal import Terminal
    from harness import start_host

    host = start_host(provisioned_image, work=tmp_path)
    try:
        bad = write_inventory(
            tmp_path / "bad.yml",
            {"h": host_entry(host, dlenv_python_manager="uv", dlenv_frameworks=["pytorch"])},
        )
        refused = playbook(bad, "--tags", "frameworks", "-e", "dlenv_verify=false")
        assert refused.returncode != 0
        assert "unknown framework pytorch; frameworks are: jax, tensorflow" in refused.tail()

        inventory = write_inventory(
            tmp_path / "inventory.yml",
            {"h": host_entry(host, dlenv_python_manager="uv", dlenv_frameworks=["jax"])},
        )
        first = playbook(inventory, "--tags", TAGS)
        assert first.returncode == 0, first.tail()
        changed = first.changed_tasks()
        # on a host dlenv provisioned: only the framework, the Lab's kernel list and the hand-over
        assert {t.split(" : ")[0] for t in changed} == {"frameworks", "jupyterlab", "dlenv"}, (
            changed
        )
        assert any("Install jax==0.10.2 jaxlib==0.10.2" in t for t in changed), first.tail()
        assert any("display name JAX" in t for t in changed), changed
        run = host.exec(
            "/opt/dlenv/frameworks/jax/bin/python -c 'import jax; print(jax.__version__)'",
            user="dlenv",
        )
        assert run.stdout.strip() == "0.10.2", run.stderr

        only = tuple(TAGS.split(","))
        [res] = provision(
            [host.target()],
            ProvisionOptions(python="uv", frameworks=("jax",), only=only),
            Terminal(interactive=False),
            plan_only=True,
        )
        assert res.ok, res.error
        assert {s.name: s.status for s in res.plan if s.name in only} == dict.fromkeys(only, "done")
        again = playbook(inventory, "--tags", TAGS)
        assert again.returncode == 0 and again.recap["h"]["changed"] == 0, again.changed_tasks()
    finally:
        host.stop()
