"""ansible/ passes its linters, and shares its inputs with dlenv's own steps.

No host needed: the linters run as CI runs them, and the templates are rendered by Ansible's
real template module (connection local) and compared with what `dlenv.provision.steps` embeds,
so an edit to either side that breaks byte-for-byte parity fails here in seconds, before the
slow host tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from ansible_support import ANSIBLE_DIR, REPO, clean_env, tool

from dlenv.provision.manifest import load_stack
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.osinfo import HostFacts, OsInfo
from dlenv.provision.steps import BASE_PACKAGES, _smoke_payload, build_steps

PLUGINS = ANSIBLE_DIR / "roles" / "dlenv" / "lookup_plugins"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_ansible_lint_production_profile() -> None:
    proc = _run([str(tool("ansible-lint")), "--offline", "-c", "ansible/.ansible-lint", "ansible/"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Profile 'production' was required, and it passed" in out, out[-3000:]


def test_yamllint_strict() -> None:
    proc = _run([str(tool("yamllint")), "--strict", "-c", "ansible/.yamllint", "ansible/"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_playbook_syntax_from_the_repository_root() -> None:
    proc = _run(
        [str(tool("ansible-playbook")), "-i", "localhost,", "ansible/site.yml", "--syntax-check"]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = _run(
        [str(tool("ansible-playbook")), "-i", "localhost,", "ansible/site.yml", "--list-tags"]
    )
    tags = set(re.findall(r"[\w-]+", listed.stdout.split("TASK TAGS:")[-1]))
    # dlenv's step names are the tags (`--tags pytorch` = `dlenv provision --only pytorch`)
    steps = {s.name for s in build_steps(load_stack(), ProvisionOptions(ca_bundle=None))}
    assert steps - {"ca-bundle"} <= tags, listed.stdout
    assert {"ca-bundle", "gpu", "always"} <= tags


def _plugin_call(name: str, call: str):
    """`call` on lookup plugin `name`, evaluated in a child process, returned through JSON.

    The plugins import ansible, and importing ansible-core 2.19 patches `sys.intern` for the
    whole process, which breaks torch.compile in every later test of the session: ansible never
    loads into the pytest process.
    """
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('plugin', {str(PLUGINS / f'{name}.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"print(json.dumps({call}, default=str))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_stack_lookup_reads_the_manifest_dlenv_reads() -> None:
    stack = load_stack()
    got = _plugin_call("dlenv_stack", "module.load()")
    assert got["stack"] == json.loads(json.dumps(stack.data, default=str))
    assert got["fingerprint"] == stack.fingerprint
    assert Path(got["path"]) == stack.path
    assert Path(got["files_dir"]) == stack.path.parent / "files"


def test_smoke_lookup_packs_the_archive_dlenv_sends() -> None:
    b64, digest = _smoke_payload()
    got = _plugin_call("dlenv_smoke", "module.payload(module.default_package_dir())")
    assert (got["b64"], got["digest"]) == (b64, digest)


def test_ansible_never_loads_into_the_test_process() -> None:
    assert not [m for m in sys.modules if m == "ansible" or m.startswith("ansible.")]


def test_the_jupyterlab_role_installs_the_steps_config_files() -> None:
    """The role writes the same provision/files templates to the same places as the step."""
    import yaml

    defaults = yaml.safe_load((ANSIBLE_DIR / "roles/jupyterlab/defaults/main.yml").read_text())
    got = {f["src"]: f["dest"] for f in defaults["jupyterlab_config_files"]}
    assert got == {
        "jupyter_server_config.json.j2": "{{ dlenv_env_prefix }}/etc/jupyter/jupyter_server_config.json",
        "jupyterlab-overrides.json.j2": (
            "{{ dlenv_env_prefix }}/share/jupyter/lab/settings/overrides.json"
        ),
    }
    apply = {s.name: s for s in build_steps(load_stack(), ProvisionOptions())}["jupyterlab"].apply
    for dest in got.values():
        assert dest.replace("{{ dlenv_env_prefix }}", "$DLENV_ENV") in apply


def test_base_packages_are_dlenvs() -> None:
    import yaml

    defaults = yaml.safe_load((ANSIBLE_DIR / "roles/base_packages/defaults/main.yml").read_text())
    assert tuple(defaults["base_packages_names"]) == BASE_PACKAGES


def _heredoc(body: str, path: str) -> str:
    m = re.search(rf"cat > {re.escape(path)} <<'DLENV_EOF'\n(.*?)\nDLENV_EOF", body, re.S)
    assert m, f"no heredoc for {path}"
    return m.group(1) + "\n"


def _expected_files(python: str) -> tuple[dict[str, object], dict[Path, str]]:
    """Variables of the shared templates and, per template, the bytes the steps write."""
    stack = load_stack()
    options = ProvisionOptions(python=python, idle_stop=45, user="ubuntu")
    facts = HostFacts(os=OsInfo("ubuntu", "24.04"), kernel="6.8.0-1015-aws", user="ubuntu")
    gpu_facts = replace(facts, nvidia_pci=("0000:00:1e.0 0302: 10de:1eb8",))
    stepset = build_steps(stack, options, facts)
    steps = {s.name: s for s in stepset.steps}
    gpu = {s.name: s for s in build_steps(stack, options, gpu_facts).steps}
    ctx = stepset.context
    files = REPO / "provision" / "files"
    roles = ANSIBLE_DIR / "roles"
    # the steps' own texts come from the same template files (not a copy that could drift)
    assert _heredoc(steps["idle-autostop"].apply, "/etc/dlenv/idle.conf") == ctx["idle_conf"] + "\n"
    unit = "/etc/systemd/system/dlenv-jupyter.service"
    assert _heredoc(steps["jupyterlab-service"].apply, unit) == ctx["jupyter_unit"] + "\n"
    nouveau = _heredoc(gpu["nvidia-driver"].apply, "/etc/modprobe.d/dlenv-blacklist-nouveau.conf")
    install = (roles / "nvidia_driver/tasks/install.yml").read_text()
    assert json.dumps(nouveau) in install  # the role's copy content, as a YAML/JSON string
    variables = {
        "dlenv_stack": stack.data,
        "dlenv_env_prefix": ctx["env_prefix"],
        "dlenv_root": ctx["root"],
        "dlenv_owner": "ubuntu",
        "dlenv_idle_minutes": 45,
    }
    expected = {
        files / "dlenv-jupyter.service.j2": ctx["jupyter_unit"] + "\n",
        files / "idle-check.j2": ctx["idle_script"] + "\n",
        files / "idle.conf.j2": ctx["idle_conf"] + "\n",
        files / "dlenv-idle.service.j2": ctx["idle_service"] + "\n",
        files / "dlenv-idle.timer.j2": ctx["idle_timer"] + "\n",
        files / "dlenv-cuda.sh.j2": _heredoc(
            gpu["cuda-toolkit"].apply, "/etc/profile.d/dlenv-cuda.sh"
        ),
        files / "dlenv-nvidia-persistence.service.j2": _heredoc(
            gpu["nvidia-driver"].apply, "/etc/systemd/system/dlenv-nvidia-persistence.service"
        ),
        # the environment's Jupyter config: one Lab on every channel (jupyterlab step and role)
        files / "jupyter_server_config.json.j2": _heredoc(
            steps["jupyterlab"].apply, '"$DLENV_ENV/etc/jupyter/jupyter_server_config.json"'
        ),
        files / "jupyterlab-overrides.json.j2": _heredoc(
            steps["jupyterlab"].apply, '"$DLENV_ENV/share/jupyter/lab/settings/overrides.json"'
        ),
        roles / "python_env/templates/dlenv-python.sh.j2": _heredoc(
            steps["python-env"].apply, "/etc/profile.d/dlenv-python.sh"
        ),
        roles / "smoke_test/templates/dlenv-smoke.j2": _heredoc(
            steps["smoke-test"].apply, "/usr/local/bin/dlenv-smoke"
        ),
        files / "dlenv-seed-examples.j2": _heredoc(
            steps["smoke-test"].apply, f"{ctx['root']}/bin/dlenv-seed-examples"
        ),
    }
    return variables, expected


@pytest.mark.slow
def test_ansible_renders_the_files_dlenvs_steps_write(tmp_path: Path) -> None:
    """Ansible's template module and the steps produce the same bytes for every shared file
    (systemd units, idle check, profile snippets), for both Python managers."""
    cases = []
    tasks = []
    for python in ("uv", "conda"):
        variables, expected = _expected_files(python)
        for src, want in expected.items():
            out = tmp_path / f"{python}-{len(cases)}.out"
            cases.append((python, src, want, out))
            tasks.append(
                {
                    "name": f"Render {src.name} ({python})",
                    "ansible.builtin.template": {"src": str(src), "dest": str(out)},
                    "vars": variables,
                }
            )
    play = [{"name": "Render", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    (tmp_path / "render.yml").write_text(json.dumps(play))
    proc = _run(
        [
            str(tool("ansible-playbook")),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(tmp_path / "render.yml"),
        ]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for python, src, want, out in cases:
        got = out.read_text()
        assert got == want, f"{src.relative_to(REPO)} ({python}) renders differently under Ansible"
