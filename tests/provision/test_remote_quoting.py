"""Values that reach a shell are one inert word each: refused when they cannot be, quoted when kept.

No host is needed: every command dlenv builds from values (the upload commands, the rendered
prelude, the smoke job's command line, the Jupyter token script) runs here under a real local
`bash`, in a temp dir holding a canary path, with the hostile values of the table below. A value
that escaped its quoting would create the canary (or run `reboot`, which is shadowed by a
function that also creates it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlenv.errors import ProvisionError, UsageError
from dlenv.provision.jupyter import RemoteJupyter
from dlenv.provision.manifest import load_stack, provision_dir
from dlenv.provision.options import ProvisionOptions, check_upload_name
from dlenv.provision.osinfo import HostFacts, OsInfo
from dlenv.provision.runner import sync_files
from dlenv.provision.steps import build_steps
from dlenv.ssh.command import chain, join, quote
from dlenv.ssh.host import CommandResult, LineSink

CANARY = "CANARY"
HOSTILE = {
    "single-quote": "a'b.whl",
    "quote-breakout": "x';touch CANARY;'.whl",
    "semicolon": "x;reboot.whl",
    "command-substitution": "$(touch CANARY).whl",
    "backticks": "`touch CANARY`.whl",
    "newline": "a\nb.whl",
    "newline-command": "a.whl\ntouch CANARY",
    "carriage-return": "a\rb.whl",
    "space": "a b.whl",
    "tab": "a\tb.whl",
    "leading-dash": "-rf.whl",
    "double-dash": "--help.whl",
    "leading-dot": ".hidden.whl",
    "double-quote": 'a"b.whl',
    "pipe": "a|touch CANARY.whl",
    "ampersand": "a&touch CANARY.whl",
    "redirect": "a>CANARY.whl",
    "glob": "*.whl",
    "backslash": "a\\b.whl",
    "dollar-var": "$HOME.whl",
    "brace": "${IFS}touch${IFS}CANARY.whl",
    "non-ascii": "tørch.whl",
}
ACCEPTED = [
    "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl",
    "numpy-2.4.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "Miniforge3-25.3.0-3-Linux-x86_64.sh",
]


def _bash(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `command` with bash in `cwd`, `reboot` shadowed by a function that drops the canary."""
    prelude = f"reboot() {{ touch {quote(str(cwd / CANARY))}; }}; export -f reboot\n"
    proc = subprocess.run(
        ["bash", "-c", prelude + command],
        cwd=cwd,
        capture_output=True,
        env={**os.environ, **env},
        timeout=60,
    )
    # decoded by hand: text mode would turn a "\r" in a value into "\n"
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def _no_canary(where: Path) -> None:
    made = [p for p in where.rglob("*") if p.name in {CANARY, f"{CANARY}.whl"}]
    assert not made, f"a value escaped its quoting: {made}"


def run_process(
    argv: list[str],
    shown: str,
    *,
    stdin: str | None,
    on_line: LineSink | None,
    timeout: float | None,
) -> CommandResult:
    """Run argv with merged output, feeding each line to `on_line` as `SshHost.run` does."""
    proc = subprocess.run(
        argv,
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if on_line:
            on_line(line)
    return CommandResult(shown, proc.returncode, proc.stdout)


class BashHost:
    """A `Host` whose commands run under local bash (sudo = the same shell) and puts are copies."""

    label = "bash-host"

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.commands: list[str] = []
        self.puts: list[str] = []

    def run(self, command: str, *, stdin=None, on_line=None, timeout=None) -> CommandResult:
        self.commands.append(command)
        prelude = f"cd {quote(str(self.cwd))} && reboot() {{ touch {CANARY}; }}; "
        return run_process(
            ["bash", "-c", prelude + command],
            command,
            stdin=stdin,
            on_line=on_line,
            timeout=timeout,
        )

    sudo = run

    def put(self, local: Path, remote: str) -> None:
        self.puts.append(remote)
        Path(remote).write_bytes(Path(local).read_bytes())


class Log:
    def write(self, text: str) -> None:
        pass


# -- names: refused by validation, before anything is uploaded --------------------------------
@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_upload_names_are_refused_with_one_line(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        check_upload_name(Path(name), "--wheelhouse")
    assert repr(name) in err.value.message and "\n" not in err.value.message

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "ok-1.0-py3-none-any.whl").write_text("w")
    (wheels / name).write_text("w")
    if name.endswith(".whl"):  # (a file no channel uses is left alone)
        with pytest.raises(UsageError, match="is not allowed") as err:
            ProvisionOptions(python="uv", wheelhouse=wheels)
        assert "\n" not in err.value.message

    installer = tmp_path / (name.replace(".whl", "") + ".sh")
    installer.write_text("#!/bin/sh\n")
    with pytest.raises(UsageError, match="is not allowed"):
        ProvisionOptions(python="conda", conda_installer=installer)

    # sync_files itself refuses (defence in depth): the host sees no command at all
    host = BashHost(tmp_path)
    remote = tmp_path / "remote"
    with pytest.raises(UsageError, match="is not allowed"):
        sync_files(
            host,  # type: ignore[arg-type]
            [
                (wheels / "ok-1.0-py3-none-any.whl", f"{remote}/ok-1.0-py3-none-any.whl"),
                (wheels / name, f"{remote}/{name}"),
            ],
            log=Log(),  # type: ignore[arg-type]
            emit=lambda *a: None,
        )
    assert host.commands == [] and host.puts == [] and not remote.exists()
    _no_canary(tmp_path)


@pytest.mark.parametrize("name", ["x;reboot.whl", "$(touch CANARY).whl", "a\nb.whl"])
def test_cli_refuses_a_hostile_wheel_before_connecting(name: str, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / name).write_text("w")
    proc = subprocess.run(
        [sys.executable, "-m", "dlenv", "provision", "--host", "dlenv@127.0.0.1:1",
         "--wheelhouse", str(wheels), "--python", "uv", "--plan"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "DLENV_STATE_DIR": str(tmp_path / "st ate"),
             "DLENV_CONFIG_DIR": str(tmp_path / "cfg")},
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "is not allowed" in errors[0], proc.stderr
    assert "cannot reach" not in proc.stderr and "Traceback" not in proc.stderr
    _no_canary(tmp_path)


# -- accepted values: the commands built from them do exactly what they say -------------------
def test_sync_files_places_accepted_names_under_a_hostile_remote_dir(tmp_path: Path) -> None:
    """The names are strict, but the remote directory is any path: join must quote it."""
    local = tmp_path / "local"
    local.mkdir()
    files = []
    hostile_dir = tmp_path / "remote $(touch CANARY) `touch CANARY`; reboot 'x'"
    for name in ACCEPTED:
        (local / name).write_text(f"payload of {name}\n")
        files.append((local / name, f"{hostile_dir}/{name}"))
    events: list[tuple[object, ...]] = []
    host = BashHost(tmp_path)
    sync_files(host, files, log=Log(), emit=lambda *a: events.append(a))  # type: ignore[arg-type]
    for path, remote in files:
        assert Path(remote).read_text() == path.read_text()
        assert oct(Path(remote).stat().st_mode & 0o777) == "0o644"
    assert events[0][:2] == ("start", "upload") and events[-1][:2] == ("done", "upload")
    # one staging dir, removed at the end (`rm -rf -- STAGE` is the last command)
    assert sum(c.startswith("mktemp") for c in host.commands) == 1
    stage = host.commands[-1].removeprefix("rm -rf -- ")
    assert stage.startswith("/tmp/dlenv-upload.") and not Path(stage).exists()
    _no_canary(tmp_path)

    # a second sync finds every copy current: nothing is uploaded
    events.clear()
    host2 = BashHost(tmp_path)
    sync_files(host2, files, log=Log(), emit=lambda *a: events.append(a))  # type: ignore[arg-type]
    assert events == [] and host2.puts == []

    # a small file changed without changing its size is seen (sha256) and uploaded again
    first = files[0][0]
    first.write_text(first.read_text().replace("payload", "PAYLOAD"))
    host3 = BashHost(tmp_path)
    sync_files(host3, files, log=Log(), emit=lambda *a: None)  # type: ignore[arg-type]
    assert [Path(p).name for p in host3.puts] == [files[0][0].name]
    assert Path(files[0][1]).read_text() == first.read_text()
    _no_canary(tmp_path)


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_join_and_chain_keep_every_value_one_word_under_bash(value: str, tmp_path: Path) -> None:
    out = _bash(chain(["printf", "%s\\0", value, "--", value], ["true"]), tmp_path)
    assert out.returncode == 0 and out.stdout.split("\0")[:-1] == [value, "--", value]
    _no_canary(tmp_path)


def test_quote_refuses_nul() -> None:
    with pytest.raises(ValueError):
        join(["printf", "a\0b"])


def _prelude(options: ProvisionOptions, user: str | None = None) -> str:
    facts = HostFacts(os=OsInfo("debian", "12", "bookworm"), kernel="6.1.0-18-cloud-amd64")
    if user is not None:
        facts = HostFacts(os=facts.os, kernel=facts.kernel, user=user)
    return build_steps(load_stack(), options, facts).prelude


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_rendered_prelude_keeps_hostile_values_inert(value: str, tmp_path: Path) -> None:
    """extra_env values (a mirror URL a user typed, say) are rendered with `| q`."""
    prelude = _prelude(ProvisionOptions(python="uv", extra_env={"DLENV_X": value}))
    out = _bash(prelude + 'printf "%s" "$DLENV_X"', tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == value
    _no_canary(tmp_path)


@pytest.mark.parametrize(
    "user", ["a;reboot", "$(touch CANARY)", "x\ny", "a b", "-r", "root'", "`id`", "a" * 70]
)
def test_hostile_user_names_are_refused(user: str) -> None:
    with pytest.raises(UsageError, match="not a valid login name"):
        ProvisionOptions(user=user)
    with pytest.raises(ProvisionError, match="not a plain user name"):
        _prelude(ProvisionOptions(), user=user)  # what `id -un` said on the host


def test_hostile_env_names_are_refused() -> None:
    with pytest.raises(UsageError, match="is not an environment variable name"):
        ProvisionOptions(extra_env={"X=1;touch CANARY;Y": "v"})


def test_accepted_unusual_user_renders_and_parses(tmp_path: Path) -> None:
    stepset = build_steps(load_stack(), ProvisionOptions(user="john.doe-2_x@corp"))
    script = stepset.prelude + "".join(s.apply + s.check for s in stepset.steps)
    (tmp_path / "s.sh").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "s.sh")]).returncode == 0
    out = _bash(stepset.prelude + 'printf "%s" "$DLENV_USER"', tmp_path)
    assert out.stdout == "john.doe-2_x@corp"


# -- other command lines built from values ----------------------------------------------------
def test_jupyter_token_script_quotes_its_paths(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("systemctl", "curl"):
        (fake_bin / tool).write_text("#!/bin/sh\nexit 0\n")
        (fake_bin / tool).chmod(0o755)
    token_file = tmp_path / "tok $(touch CANARY) `reboot`;x"
    token_file.write_text("ab" * 20)
    jup = RemoteJupyter(8888, str(token_file), "svc;reboot")
    out = _bash(jup.token_script(), tmp_path, PATH=f"{fake_bin}:{os.environ['PATH']}")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ab" * 20
    _no_canary(tmp_path)


# -- the templates: every interpolation is a manifest literal, a checked value, or `| q` -------
TRUSTED_ROOTS = {
    # literals of provision/stack.toml and values derived from it alone
    "s",
    "conda",
    "root",
    "env_prefix",
    "torch_index",
    "torch_variant",
    "branch",
    "dist",
    "token",
    "base_packages",
    "ch",
    "key",  # extra_env names: checked against [A-Za-z_][A-Za-z0-9_]* (ProvisionOptions)
    # computed by dlenv: hex digests, the stack fingerprint, an int, base64 of its own tarball
    "fingerprint",
    "ca_sha256",
    "smoke_digest",
    "smoke_tar_b64",
    "idle_minutes",
    "conda_dist_name",  # must be a key of the manifest's [conda.dist] (Stack.conda_dist)
    "fabricmanager_packages",  # [nvidia] fabricmanager_packages with the manifest's branch
    "fm_service",  # [nvidia] fabricmanager_service
    # per-OS driver data: manifest values + the kernel flavour, matched by [a-z0-9-]+ (osinfo),
    # and the kernel release, used only when it matches KERNEL_RELEASE (steps)
    "variant",
    # dlenv's own files (provision/files), rendered with a checked user; a heredoc delimiter
    # line in them is refused by render_file
    "cuda_profile",
    "idle_conf",
    "idle_script",
    "idle_service",
    "idle_timer",
    "jupyter_unit",
    "jupyter_server_config",
    "jupyterlab_overrides",
    "scientific_requirements",  # name==version of [scientific.packages] (manifest literals)
    "persistence_unit",
    "seed_examples",
}


def test_every_template_interpolation_is_trusted_or_quoted() -> None:
    """A new template value from options or host facts must use `| q` (or be argued for here)."""
    untrusted = []
    for template in sorted((provision_dir() / "steps").glob("*.j2")):
        for expr in re.findall(r"{{(.*?)}}", template.read_text()):
            expr = expr.strip()
            if re.search(r"\|\s*q\s*$", expr):
                continue
            root = re.match(r"[A-Za-z_][A-Za-z0-9_]*", expr)
            if not root or root.group(0) not in TRUSTED_ROOTS:
                untrusted.append(f"{template.name}: {{{{ {expr} }}}}")
    assert not untrusted, "render these with | q:\n" + "\n".join(untrusted)


def test_no_user_content_in_a_heredoc() -> None:
    """Heredocs carry only dlenv's own files; the CA bundle (the one user file) is uploaded."""
    for template in sorted((provision_dir() / "steps").glob("*.j2")):
        text = template.read_text()
        for body in re.findall(r"<<'(\w+)'\n(.*?)\n\1\n", text, flags=re.S):
            for expr in re.findall(r"{{(.*?)}}", body[1]):
                root = re.match(r"\s*([A-Za-z_]\w*)", expr)
                assert root and root.group(1) in TRUSTED_ROOTS, f"{template.name}: {expr}"
        assert "ca_pem" not in text
