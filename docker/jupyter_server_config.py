# JupyterLab settings of the dlenv notebook image (copied to /etc/jupyter by docker/Dockerfile).
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
