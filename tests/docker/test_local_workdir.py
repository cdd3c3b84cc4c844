"""`dlenv local up --workdir DIR` with the real CPU image: a host folder (a space in its path, as
in macOS homes) becomes the Lab's ~/work, and what the Lab and its kernel write there belongs to
the host user, never to root or the image's uid 1000. Bad folders are one line each.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

import pytest
import requests

from docker_support import free_port, run_dlenv
from jupyter_ws import shutdown, start_kernel

pytestmark = pytest.mark.docker

OTHER_UID = 4321  # under root (CI), the folder's owner: neither root nor the image's 1000


def test_workdir_files_belong_to_the_host_user(docker_client, cpu_image, isolated_local, tmp_path):
    folder = tmp_path / "my work"
    folder.mkdir()
    (folder / "data.csv").write_text("a,b\n1,2\n")
    if os.getuid() == 0:
        for path in (folder, folder / "data.csv"):
            os.chown(path, OTHER_UID, OTHER_UID)
        expected = OTHER_UID
    else:
        expected = os.getuid()
    port = free_port()
    args = ["local", "up", "--cpu", "--image", cpu_image, "--no-build", "--port", str(port)]
    try:
        up = run_dlenv(*args, "--workdir", str(folder), env=isolated_local, timeout=300)
        assert up.returncode == 0, up.stderr
        assert f"~/work is your folder {folder}" in up.stderr
        base, token = up.stdout.strip().splitlines()[-1].split("/lab?token=")

        put = requests.put(
            f"{base}/api/contents/from-lab.txt",
            headers={"Authorization": f"token {token}"},
            data=json.dumps({"type": "file", "format": "text", "content": "saved in the Lab"}),
            timeout=30,
        )
        assert put.status_code == 201, put.text
        kernel = start_kernel(base, token)
        try:
            kernel.execute(
                "import os, pathlib\n"
                "assert pathlib.Path('data.csv').read_text().startswith('a,b')\n"
                "pathlib.Path('out').mkdir()\n"
                "pathlib.Path('out/model.txt').write_text(str(os.getuid()))\n"
                "pathlib.Path(os.path.expanduser('~/.cache-probe')).write_text('home works')\n"
            )
        finally:
            shutdown(kernel)
        for made in ("from-lab.txt", "out", "out/model.txt"):
            assert (folder / made).stat().st_uid == expected, made
        # the user's own folder: dlenv adds nothing to it (no starter notebooks copied in)
        assert not (folder / "examples").exists()
        assert (folder / "out" / "model.txt").read_text() == str(expected)

        # the smoke job runs as the notebook user too (the container itself starts as root)
        smoke = run_dlenv(
            "local", "smoke-test", "--quick", "--cpu", "--json", env=isolated_local, timeout=600
        )
        assert smoke.returncode == 0, smoke.stderr[-2000:]
        user = subprocess.run(
            ["docker", "exec", "-u", f"{expected}", isolated_local["DLENV_LOCAL_CONTAINER"],
             "id", "-un"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert user.stdout.strip() == "dlenv", user  # the notebook user took the host's uid

        status = run_dlenv("local", "status", "--json", env=isolated_local)
        assert json.loads(status.stdout)["workdir"] == str(folder), status.stdout
        plain = run_dlenv("local", "status", env=isolated_local)
        assert f"files: folder {folder}" in plain.stderr, plain.stderr
        down = run_dlenv("local", "down", env=isolated_local)
        assert down.returncode == 0, down.stderr
        assert (folder / "from-lab.txt").read_text() == "saved in the Lab"
        # --volumes: the packages volume of that uid goes too; the folder is never touched
        gone = run_dlenv("local", "down", "--volumes", "--yes", env=isolated_local)
        assert gone.returncode == 0, gone.stderr
        assert not docker_client.volumes.list(
            filters={"name": isolated_local["DLENV_WORK_VOLUME"]}
        ), "a volume of the test is left"
        assert (folder / "out" / "model.txt").is_file()
    finally:
        run_dlenv("local", "down", env=isolated_local)
        for volume in docker_client.volumes.list(
            filters={"name": isolated_local["DLENV_WORK_VOLUME"]}
        ):
            with contextlib.suppress(Exception):
                volume.remove(force=True)


def test_bad_workdir_is_one_line(isolated_local, tmp_path):
    missing = run_dlenv(
        "local", "up", "--cpu", "--workdir", str(tmp_path / "nope"), env=isolated_local
    )
    assert missing.returncode == 2 and "no such folder" in missing.stderr, missing.stderr
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    notdir = run_dlenv("local", "up", "--cpu", "--workdir", str(afile), env=isolated_local)
    assert notdir.returncode == 2 and "is not a folder" in notdir.stderr, notdir.stderr
    for res in (missing, notdir):
        assert "Traceback" not in res.stderr
