"""A newcomer's first minutes, for real: `scripts/local-up` in a clean shell, then the commands it
prints, exactly as printed; compose without JUPYTER_TOKEN (up still gets one; down just works);
`dlenv local status` with the URL on a line of its own; no temporary CA bundle left behind.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from docker_support import BASE_IMAGE, REPO, api_status, find_wheelhouse, free_port, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NEXT = "stop it: dlenv local down   check it: dlenv local smoke-test"
EXPORT_LINE = 'export PATH="$HOME/.local/bin:$PATH"'


# -- compose without a token ----------------------------------------------------------------------
def test_compose_without_a_token_generates_one_and_down_just_works(
    docker_client, cpu_image, compose_cmd, unique
) -> None:
    port = free_port()
    project = f"dlenv-test-{unique}"
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    env |= {
        "DLENV_IMAGE": cpu_image,
        "DLENV_PORT": str(port),
        "DLENV_WORK_VOLUME": f"dlenv-test-work-{unique}",
    }
    cmd = [*compose_cmd, "-f", str(REPO / "docker" / "compose.cpu.yaml"), "-p", project]

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=300)

    # nothing running yet: down (and ps) need no token
    first_down = compose("down")
    assert first_down.returncode == 0, first_down.stderr
    up = compose("up", "-d")
    try:
        assert up.returncode == 0, up.stderr

        # the container generated a token and printed it in its log (the line the docs grep)
        def logged_token() -> str | None:
            logs = compose("logs", "notebook").stdout
            found = re.search(r"JUPYTER_TOKEN.*: ([0-9a-f]{32,})\s*$", logs, re.M)
            return found.group(1) if found else None

        token = wait_for(logged_token, 120, "the token in the container's log")
        wait_for(lambda: api_status(port, token) == 200, 120, "Jupyter to accept that token")
        assert api_status(port, None) == 403
        assert api_status(port, "wrong") == 403
    finally:
        down = compose("down", "-v")
    assert down.returncode == 0, down.stderr
    assert not docker_client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )


# -- scripts/local-up and the commands it prints ------------------------------------------------
def local_up_env(home: Path, tmp: Path, path: str, isolated: dict[str, str]) -> dict[str, str]:
    """A fresh user's shell: its own HOME and TMPDIR, a PATH with no dlenv on it."""
    keep = {k: v for k, v in os.environ.items() if k.startswith(("DOCKER_", "PIP_", "SSL_"))}
    return {
        **keep,
        **isolated,
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "PATH": path,
        "NO_COLOR": "1",
        "TERM": "dumb",
        # no registry here: the script's base-image and wheel detection are covered elsewhere
        "DLENV_BASE_IMAGE": BASE_IMAGE,
        "DLENV_WHEELHOUSE": str(find_wheelhouse()),
    }


def sh(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One line typed into a new bash (cwd: the checkout, as the README's commands)."""
    return subprocess.run(
        ["bash", "-c", line], env=env, capture_output=True, text=True, cwd=REPO, timeout=600
    )


def test_local_up_then_the_printed_commands_work_as_printed(
    cpu_image, isolated_local, tmp_path
) -> None:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    shim = home / ".local" / "bin" / "dlenv"
    extra_cas = list(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    base_path = "/usr/local/bin:/usr/bin:/bin"
    assert sh("command -v dlenv", local_up_env(home, tmp, base_path, isolated_local)).returncode

    # 1. ~/.local/bin not on PATH, and `local up` fails (port taken): the shim is there anyway,
    #    the script says the one line that puts it on PATH, and the CA bundle is gone
    env = local_up_env(home, tmp, base_path, isolated_local)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        failed = sh(f"scripts/local-up --cpu --image {cpu_image} --port {port}", env)
    assert failed.returncode == 2, failed.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in failed.stderr
    assert shim.is_symlink() and shim.resolve() == (REPO / ".venv" / "bin" / "dlenv").resolve()
    assert f"\n  {EXPORT_LINE}\n" in failed.stderr
    if extra_cas:
        assert "trusting this machine's extra CAs inside the image" in failed.stderr
    assert list(tmp.iterdir()) == []  # the temporary CA bundle did not outlive the failure
    # the printed line, then a dlenv command, in a new shell
    printed = sh(f"{EXPORT_LINE}; dlenv local status", env)
    assert printed.returncode == 0, printed.stderr
    assert "no local notebook" in printed.stderr

    # 2. ~/.local/bin on PATH (a login shell of a fresh Debian/Ubuntu user has it once it
    #    exists): local-up, then each printed command in a new shell, as printed
    env = local_up_env(home, tmp, f"{home}/.local/bin:{base_path}", isolated_local)
    port = free_port()
    up = sh(f"scripts/local-up --cpu --image {cpu_image} --port {port}", env)
    try:
        assert up.returncode == 0, up.stderr
        assert NEXT in up.stderr and EXPORT_LINE not in up.stderr
        url = up.stdout.strip().splitlines()[-1]
        assert url.startswith(f"http://127.0.0.1:{port}/lab?token=")
        assert list(tmp.iterdir()) == []  # removed on success too

        # `local status`: the URL on a line of its own, whole, even in a narrow terminal
        status = sh("dlenv local status", {**env, "COLUMNS": "40"})
        assert status.returncode == 0, status.stderr
        assert url in status.stdout.splitlines()
        assert "running" in status.stdout

        smoke = sh("dlenv local smoke-test --quick", env)
        assert smoke.returncode == 10, smoke.stdout + smoke.stderr  # passed, CPU only
    finally:
        down = sh("dlenv local down", env)
    assert down.returncode == 0, down.stderr
    assert "removed" in down.stderr
    assert api_status(port, url.split("token=", 1)[1]) == 0
