"""The starter notebooks in the CPU image, for real: seeded by the container's start into the work
volume, executed through the Lab's own kernel (`dlenv`, its kernelspec and environment) with
nbclient, and never overwritten or brought back by a restart once the user has them.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from docker_support import REPO, api_status, free_port, local_up, run_dlenv, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NOTEBOOKS = (
    "00-gpu-check.ipynb",
    "01-pytorch-cnn.ipynb",
    "02-keras-cnn.ipynb",
    "03-pandas-first-look.ipynb",
)
EXAMPLES = "/home/dlenv/work/examples"
RUNNER = REPO / "tests" / "notebooks" / "run_notebooks.py"
EXPECTED = {
    "00-gpu-check.ipynb": ["CPU only: PyTorch sees no CUDA device", "max relative error"],
    "01-pytorch-cnn.ipynb": ["on cpu", "test accuracy"],
    "02-keras-cnn.ipynb": ["on the torch backend", "test accuracy"],
    "03-pandas-first-look.ipynb": ["(178, 14)", "<image/png>"],
}


def run_in(container: str, *argv: str, stdin: str | None = None, user: str = "dlenv"):
    return subprocess.run(
        ["docker", "exec", "-i", "-u", user, container, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=900,
    )


def execute_notebooks(container: str, folder: str, names: tuple[str, ...]) -> list[dict]:
    """Every notebook through the kernel the Lab offers, inside the container (nbclient)."""
    proc = run_in(container, "python", "-", "dlenv", folder, *names, stdin=RUNNER.read_text())
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in records if not r["ok"]]
    assert proc.returncode == 0 and not failed, (
        f"exit {proc.returncode}\n{failed}\n{proc.stderr[-3000:]}"
    )
    assert [r["notebook"] for r in records] == list(names)
    return records


def test_image_seeds_and_runs_the_starter_notebooks(cpu_image, isolated_local) -> None:
    port = free_port()
    up = local_up(cpu_image, port, isolated_local)
    assert up.returncode == 0, up.stderr
    token = up.stdout.strip().splitlines()[-1].split("token=", 1)[1]
    name = isolated_local["DLENV_LOCAL_CONTAINER"]

    # seeded by the container's start, owned by the notebook user, with the sync marker
    listing = run_in(name, "ls", EXAMPLES)
    assert listing.stdout.split() == list(NOTEBOOKS), listing.stderr
    owner = run_in(name, "stat", "-c", "%U", EXAMPLES, f"{EXAMPLES}/{NOTEBOOKS[1]}")
    assert owner.stdout.split() == ["dlenv", "dlenv"]
    marker = run_in(name, "test", "-f", "/home/dlenv/.local/state/dlenv/synced-down")
    assert marker.returncode == 0
    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout
    assert f"4 starter notebooks in {EXAMPLES}" in logs

    # through the real kernel, in the folder the Lab shows them in
    records = execute_notebooks(name, EXAMPLES, NOTEBOOKS)
    for record in records:
        for text in EXPECTED[record["notebook"]]:
            assert text in record["output"], (record["notebook"], text, record["output"][-2000:])
    print(
        "\n[figures] starter notebooks in the CPU image (nbclient, kernel dlenv): "
        + ", ".join(f"{r['notebook']} {r['seconds']:.1f}s" for r in records)
    )

    # the user's edits survive a restart; what they deleted stays deleted
    run_in(name, "sh", "-c", f"echo '{{}}' > {EXAMPLES}/{NOTEBOOKS[1]}")
    run_in(name, "rm", f"{EXAMPLES}/{NOTEBOOKS[3]}")
    subprocess.run(["docker", "restart", name], check=True, capture_output=True, timeout=120)
    wait_for(lambda: api_status(port, token) == 200, 120, "Jupyter after the restart")
    assert run_in(name, "cat", f"{EXAMPLES}/{NOTEBOOKS[1]}").stdout == "{}\n"
    assert run_in(name, "ls", EXAMPLES).stdout.split() == [
        *NOTEBOOKS[:3],
        "wine-first-look.png",  # written by notebook 03 next to itself
    ]
    # the whole folder gone: the next start brings a fresh copy
    run_in(name, "rm", "-rf", EXAMPLES)
    subprocess.run(["docker", "restart", name], check=True, capture_output=True, timeout=120)
    wait_for(lambda: api_status(port, token) == 200, 120, "Jupyter after the second restart")
    assert run_in(name, "ls", EXAMPLES).stdout.split() == list(NOTEBOOKS)
    down = run_dlenv("local", "down", env=isolated_local)
    assert down.returncode == 0, down.stderr
