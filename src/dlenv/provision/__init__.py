"""Provisioning: the stack manifest, its idempotent steps, the script renderer and the SSH runner.

- `manifest.load_stack()` -> `Stack` (pinned versions + `fingerprint`)
- `options.ProvisionOptions` -> what a user chose (python manager, wheelhouse, --cpu, ...)
- `render.render_script(stack, options)` -> one plain bash script (Dockerfile, Packer)
- `runner.provision(targets, options, terminal)` -> per-host results (SSH, in parallel)
"""
