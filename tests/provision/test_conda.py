"""The conda path on a real host: download over HTTP, sha256 check, installer run, env created.

Conda installers cannot be downloaded here, so the installer is a truthful stand-in given as a
local file: a shell installer with Miniforge's interface (`-b -p PREFIX`) that installs a `conda`
command able to do what the step asks of it (`config --system --set`, `create -p ENV python=X
pip`, building the env with the system's python -m venv). What this proves is dlenv's side:
download, checksum refusal, install, env creation, ownership, idempotence and --conda-installer.
The real Miniforge/Anaconda installers are NOT exercised here.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from dlenv.provision.manifest import load_stack, provision_dir
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.runner import provision
from dlenv.terminal import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]

INSTALLER = r"""#!/bin/bash
# Stand-in conda installer with Miniforge's batch interface: -b (batch) -p PREFIX.
set -euo pipefail
prefix=""
while [ $# -gt 0 ]; do case "$1" in -b) shift ;; -p) prefix=$2; shift 2 ;; *) echo "unknown $1" >&2; exit 2 ;; esac; done
[ -n "$prefix" ] || { echo "need -p PREFIX" >&2; exit 2; }
[ ! -e "$prefix" ] || { echo "ERROR: File or directory already exists: '$prefix'" >&2; exit 1; }
mkdir -p "$prefix/bin" "$prefix/envs"
cat > "$prefix/bin/conda" <<'CONDA'
#!/bin/bash
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in
  --version) echo "conda 25.3.0 (stand-in)" ;;
  config) shift; [ "$1" = --system ] && shift; [ "$1" = --set ] && echo "$2: $3" >> "$root/.condarc" ;;
  create)
    shift; env=""; py=""; want_pip=0
    while [ $# -gt 0 ]; do case "$1" in
      -p) env=$2; shift 2 ;; -c) shift 2 ;; -y|-q|--override-channels) shift ;;
      python=*) py=${1#python=}; shift ;; pip) want_pip=1; shift ;; *) echo "unsupported spec $1" >&2; exit 2 ;;
    esac; done
    have=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$have" = "$py" ] || { echo "PackagesNotFoundError: python=$py" >&2; exit 1; }
    python3 -m venv "$env"
    [ "$want_pip" = 1 ] || rm -f "$env/bin/pip"* ;;
  *) echo "conda stand-in: unsupported command $*" >&2; exit 2 ;;
esac
CONDA
chmod 755 "$prefix/bin/conda"
echo "installed into $prefix"
"""


class _Server:
    def __init__(self, directory: Path) -> None:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def _gateway(host) -> str:
    """The address the host container reaches this machine at (its default route)."""
    route = host.exec("ip route show default").stdout.split()
    return route[route.index("via") + 1]


def _stack_with(tmp: Path, name: str, url: str, sha: str):
    stack = load_stack()
    dist = stack.conda_dist("miniforge")
    text = (
        (provision_dir() / "stack.toml")
        .read_text()
        .replace(dist["url"], url)
        .replace(dist["sha256"], sha)
    )
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return load_stack(path)


def test_conda_download_checksum_install_and_local_installer(host_pool, tmp_path) -> None:
    host = host_pool()
    files = tmp_path / "srv"
    files.mkdir()
    installer = files / "Miniforge3-test-Linux-x86_64.sh"
    installer.write_text(INSTALLER)
    sha = hashlib.sha256(installer.read_bytes()).hexdigest()
    server = _Server(files)
    url = f"http://{_gateway(host)}:{server.port}/{installer.name}"
    options = ProvisionOptions(python="conda", only=("base-packages", "python-env"))
    terminal = Terminal(interactive=False)
    try:
        tampered = _stack_with(tmp_path, "bad", url, "0" * 64)
        [bad] = provision([host.target()], options, terminal, stack=tampered)
        assert not bad.ok and bad.failed_step == "python-env"
        assert f"conda installer checksum mismatch: got {sha}" in bad.error.message
        assert host.exec("test -e /opt/dlenv/conda").returncode == 1  # nothing ran

        good = _stack_with(tmp_path, "good", url, sha)
        [ok] = provision([host.target()], options, terminal, stack=good)
        assert ok.ok, ok.error
        assert ok.applied == ["python-env"]
        res = host.exec(
            "/opt/dlenv/conda/envs/dlenv/bin/python -c 'import sys; print(sys.version_info[:2])'"
            " && stat -c %U /opt/dlenv/conda/envs/dlenv && cat /opt/dlenv/conda/.condarc"
        )
        assert "(3, 11)" in res.stdout and "dlenv" in res.stdout
        assert "ssl_verify: /etc/ssl/certs/ca-certificates.crt" in res.stdout
        [again] = provision([host.target()], options, terminal, stack=good)
        assert again.ok and again.applied == []
    finally:
        server.close()

    # --conda-installer: the same file, uploaded; the URL is never contacted (server is down)
    host.exec("rm -rf /opt/dlenv/conda")
    [local] = provision(
        [host.target()], options.with_(conda_installer=installer), terminal, stack=good
    )
    assert local.ok, local.error
    assert local.applied == ["python-env"]
    assert host.exec("test -x /opt/dlenv/conda/envs/dlenv/bin/python").returncode == 0
