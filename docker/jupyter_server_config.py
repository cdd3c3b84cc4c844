# JupyterLab settings of the dlenv notebook image (copied to /etc/jupyter by docker/Dockerfile).
#
# Only what differs from the SSH service is here (address, port, token source, root dir): which
# kernels the Lab offers (only the stack's, the default) and that it never fetches news or checks
# for updates come from the environment's own config, which the jupyterlab step writes for every
# channel (<env>/etc/jupyter/jupyter_server_config.json, <env>/share/jupyter/lab/settings/).
#
# The token comes from $JUPYTER_TOKEN (compose and `dlenv local up` set it); the port is published
# on the host's 127.0.0.1 only, so listening on all addresses *inside* the container is safe.
import os

c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file

# Inside the container only: Docker's port publishing reaches the container's own interface, not
# its loopback. Exposure is decided where the port is published, and both compose.yaml and
# `dlenv local up` publish on 127.0.0.1 only (tests/docker check it); the token is always required.
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = int(os.environ.get("JUPYTER_PORT", "8888"))
c.ServerApp.open_browser = False
c.ServerApp.root_dir = os.environ.get("DLENV_WORK_DIR", os.path.expanduser("~/work"))
c.ServerApp.allow_remote_access = True  # the Host header is the user's forwarded 127.0.0.1:PORT
# a notebook container should say when it has no token rather than run open
if not os.environ.get("JUPYTER_TOKEN"):
    import secrets

    token = secrets.token_hex(24)
    os.environ["JUPYTER_TOKEN"] = token
    print(f"[dlenv] JUPYTER_TOKEN was not set: generated one: {token}", flush=True)
c.IdentityProvider.token = os.environ["JUPYTER_TOKEN"]
# where `pip install` in a notebook goes (the image's PIP_PREFIX, user_site.py): said in the log
if os.environ.get("PIP_PREFIX"):
    print(
        f"[dlenv] pip install in a notebook goes to {os.environ['PIP_PREFIX']} (dlenv local up: "
        "the dlenv-packages volume, kept across down/up; the stack's pins are held)",
        flush=True,
    )
