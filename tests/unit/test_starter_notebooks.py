"""The starter notebooks and their seeder, without a kernel (tests/docker and tests/provision
execute them through the real kernel in the image and on a provisioned host).

- the shipped notebooks are clean (no outputs, no execution counts), valid and small, each with a
  markdown introduction; the Keras one leaves the backend to the kernel;
- the seeder copies them once into <work>/examples, never over the user's files, brings back
  nothing the user deleted unless the whole folder is gone, and keeps the sync marker right;
- every channel gets it: the payload the smoke-test step ships carries it, the step installs the
  wrapper (before the Lab service, whose unit runs it), the image's start runs it.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import pytest

from dlenv.provision.manifest import load_stack
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.steps import (
    STEP_NAMES,
    build_steps,
    file_context,
    render_file,
)
from dlenv_smoke import examples

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = (
    "00-gpu-check.ipynb",
    "01-pytorch-cnn.ipynb",
    "02-keras-cnn.ipynb",
    "03-pandas-first-look.ipynb",
)


def code_of(nb: nbformat.NotebookNode) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


# -- the notebooks ----------------------------------------------------------------------------
def test_the_shipped_notebooks_are_these_four() -> None:
    assert sorted(p.name for p in examples.NOTEBOOKS_DIR.iterdir()) == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean_valid_small_and_introduced(name: str) -> None:
    path = examples.NOTEBOOKS_DIR / name
    assert path.stat().st_size < 8_000
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == load_stack().get("jupyter.kernel_name")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (name, cell.id)
    assert len({c.id for c in nb.cells}) == len(nb.cells)


def test_training_notebooks_use_the_bundled_digits_and_assert_above_chance() -> None:
    for name in ("01-pytorch-cnn.ipynb", "02-keras-cnn.ipynb"):
        code = code_of(nbformat.read(examples.NOTEBOOKS_DIR / name, as_version=4))
        assert "load_digits()" in code
        assert "assert test_accuracy > 0.9" in code
        assert "http" not in code and "download" not in code.lower()
    torch_code = code_of(nbformat.read(examples.NOTEBOOKS_DIR / NOTEBOOKS[1], as_version=4))
    assert 'torch.device("cuda" if torch.cuda.is_available() else "cpu")' in torch_code


def test_keras_notebook_leaves_the_backend_to_the_kernel() -> None:
    code = code_of(nbformat.read(examples.NOTEBOOKS_DIR / "02-keras-cnn.ipynb", as_version=4))
    for forbidden in ("KERAS_BACKEND", "os.environ", "set_backend", "import tensorflow"):
        assert forbidden not in code
    assert "keras.backend.backend()" in code  # it says which backend it got


def test_gpu_check_has_a_cpu_only_branch_and_a_guarded_nvidia_smi() -> None:
    code = code_of(nbformat.read(examples.NOTEBOOKS_DIR / "00-gpu-check.ipynb", as_version=4))
    assert "if torch.cuda.is_available():" in code and "CPU only" in code
    assert 'shutil.which("nvidia-smi")' in code


# -- the seeder -------------------------------------------------------------------------------
def test_seed_copies_once_and_touches_the_marker(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "home" / "work"
    copied = examples.seed(work, home)
    assert copied == list(NOTEBOOKS)
    dest = work / "examples"
    for name in NOTEBOOKS:
        assert (dest / name).read_bytes() == (examples.NOTEBOOKS_DIR / name).read_bytes()
    marker = home / ".local/state/dlenv/synced-down"
    assert marker.is_file()
    # nothing of dlenv's counts as the user's unsaved work
    assert all((dest / n).stat().st_mtime <= marker.stat().st_mtime for n in NOTEBOOKS)
    assert not [p for p in work.iterdir() if p.name != "examples"]  # no temporary folder left
    assert oct(dest.stat().st_mode & 0o777) == oct(0o755)


def test_seed_never_overwrites_or_resurrects(tmp_path: Path) -> None:
    home, work = tmp_path, tmp_path / "work"
    examples.seed(work, home)
    dest = work / "examples"
    (dest / "01-pytorch-cnn.ipynb").write_text("my edits")
    (dest / "03-pandas-first-look.ipynb").unlink()
    (dest / "mine.ipynb").write_text("{}")
    assert examples.seed(work, home) == []
    assert (dest / "01-pytorch-cnn.ipynb").read_text() == "my edits"
    assert not (dest / "03-pandas-first-look.ipynb").exists()
    assert (dest / "mine.ipynb").exists()
    # an empty folder or a file of that name is the user's too
    for name in ("01-pytorch-cnn.ipynb", "02-keras-cnn.ipynb", "00-gpu-check.ipynb", "mine.ipynb"):
        (dest / name).unlink()
    assert examples.seed(work, home) == [] and list(dest.iterdir()) == []
    dest.rmdir()
    dest.write_text("not a folder")
    assert examples.seed(work, home) == []
    dest.unlink()
    # the whole folder gone: a fresh copy
    assert examples.seed(work, home) == list(NOTEBOOKS)


def test_an_existing_marker_is_kept_and_the_copy_is_not_newer(tmp_path: Path) -> None:
    home, work = tmp_path, tmp_path / "work"
    marker = home / ".local/state/dlenv/synced-down"
    marker.parent.mkdir(parents=True)
    marker.touch()
    os.utime(marker, (1_700_000_000, 1_700_000_000))
    examples.seed(work, home)
    assert marker.stat().st_mtime == 1_700_000_000
    for name in NOTEBOOKS:
        assert (work / "examples" / name).stat().st_mtime == 1_700_000_000


def wrapper(tmp_path: Path) -> Path:
    """The installed seeder script as the steps render it, pointed at this test's Python."""
    text = render_file(
        "dlenv-seed-examples.j2", file_context(load_stack(), sys.prefix, "dlenv", 60)
    )
    path = tmp_path / "dlenv-seed-examples"
    path.write_text(text + "\n")
    path.chmod(0o755)
    return path


def run_wrapper(tmp_path: Path, home: Path, *args: str, **env: str):
    clean = {k: v for k, v in os.environ.items() if k != "DLENV_WORK_DIR"}
    return subprocess.run(
        [str(wrapper(tmp_path)), *args],
        env={**clean, "HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_installed_script_seeds_the_stacks_work_dir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    work_dir = load_stack().get("jupyter.work_dir")
    proc = run_wrapper(tmp_path, home)
    assert proc.returncode == 0, proc.stderr
    assert f"4 starter notebooks in {home / work_dir / 'examples'}" in proc.stdout
    assert sorted(p.name for p in (home / work_dir / "examples").iterdir()) == list(NOTEBOOKS)
    again = run_wrapper(tmp_path, home)
    assert again.returncode == 0 and again.stdout == ""
    # $DLENV_WORK_DIR (the Docker image sets it) wins over the default
    other = tmp_path / "elsewhere"
    proc = run_wrapper(tmp_path, home, DLENV_WORK_DIR=str(other))
    assert proc.returncode == 0 and (other / "examples" / NOTEBOOKS[0]).is_file()


def test_a_users_own_folder_gets_no_examples(tmp_path: Path) -> None:
    """`local up --workdir DIR` sets DLENV_SEED_EXAMPLES=0: the project folder stays as it is."""
    home = tmp_path / "home"
    home.mkdir()
    folder = tmp_path / "project"
    folder.mkdir()
    proc = run_wrapper(tmp_path, home, DLENV_WORK_DIR=str(folder), DLENV_SEED_EXAMPLES="0")
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    assert list(folder.iterdir()) == []
    # asked for by hand, they still come
    proc = run_wrapper(tmp_path, home, "--work-dir", str(folder), DLENV_SEED_EXAMPLES="0")
    assert proc.returncode == 0 and (folder / "examples" / NOTEBOOKS[0]).is_file()


def test_a_seeding_problem_never_stops_the_lab(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_wrapper(tmp_path, tmp_path, "--work-dir", str(blocker / "work"))
    assert proc.returncode == 0
    assert proc.stderr.startswith("dlenv-seed-examples: starter notebooks not copied:")
    assert "Traceback" not in proc.stderr


# -- every channel gets it ------------------------------------------------------------------
def test_the_smoke_payload_carries_notebooks_and_seeder() -> None:
    stepset = build_steps(load_stack(), ProvisionOptions(python="uv"))
    ctx = stepset.context
    raw = base64.b64decode(ctx["smoke_tar_b64"])
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert "dlenv_smoke/examples.py" in names
    assert {f"dlenv_smoke/notebooks/{n}" for n in NOTEBOOKS} <= names


def test_the_seeder_is_installed_before_the_lab_service_that_runs_it() -> None:
    stack = load_stack()
    assert STEP_NAMES.index("smoke-test") < STEP_NAMES.index("jupyterlab-service")
    stepset = build_steps(stack, ProvisionOptions(python="uv"))
    steps = {s.name: s for s in stepset.steps}
    root = stack.get("python.root")
    seeder = f"{root}/bin/dlenv-seed-examples"
    script = stepset.context["seed_examples"]
    assert f"cat > {seeder} <<'DLENV_EOF'\n{script}\nDLENV_EOF" in steps["smoke-test"].apply
    assert f"cmp -s {seeder} - <<'DLENV_EOF'\n{script}\nDLENV_EOF" in steps["smoke-test"].check
    assert f"ExecStartPre=-{seeder}\n" in stepset.context["jupyter_unit"]
    site = (REPO / "ansible" / "site.yml").read_text()
    assert site.index("role: smoke_test") < site.index("role: jupyterlab_service")


def test_the_image_seeds_before_jupyter_starts() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert 'CMD ["/bin/sh", "-c", "dlenv-seed-examples; exec jupyter lab"]' in dockerfile
    assert "/opt/dlenv/bin" in dockerfile.split("ENV PATH=", 1)[1].split("\n", 1)[0]
