"""Local notebook containers: build the dlenv images and run them on this machine's Docker engine.

Small modules, one job each:

- `engine`   connect to the Docker engine (clear "no engine" error), GPU runtime detection
- `images`   image names/tags derived from the stack fingerprint, manifest labels
- `context`  assemble a build context (Dockerfile, rendered provision script, smoke job, config)
- `progress` turn a build's stream (classic builder JSON or BuildKit plain text) into a readable
             live view, keeping the failing step's last lines
- `build`    build with BuildKit (docker buildx) or the engine's classic builder (Docker SDK), tag
             `dlenv/notebook:<fingerprint>-{cpu,gpu}` + `latest-*`
- `notebook` local up/down/status/smoke-test of the notebook container (ports, token, health)

Library modules: they raise `dlenv.errors.DockerError`/`UsageError`, never import click, and take
the Docker client and the Terminal explicitly.
"""
