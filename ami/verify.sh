#!/usr/bin/env bash
# Runs on the builder (as root) after the second run of provision.sh (the one after a reboot).
#   DLENV_SCRIPTS  where the scripts directory was uploaded
# The image may only be made when nothing still waits for a reboot and, for scripts with the GPU
# steps (rendered without --cpu, tagged dlenv:gpu=yes), when the driver step really ran.
set -euo pipefail
cd "${DLENV_SCRIPTS:?}"
if [ -e /var/run/reboot-required ]; then
  echo "a step still needs a reboot after the builder rebooted once: see its lines above" >&2
  exit 1
fi
if grep -q '^# ---- step: nvidia-driver ' provision.sh && [ ! -e /var/lib/dlenv/steps/nvidia-driver ]; then
  echo "the builder has no NVIDIA GPU, so the driver step did not run: use a GPU instance_type," \
    "or render the scripts with \`dlenv ami script --cpu\` for a CPU image" >&2
  exit 1
fi
echo "[dlenv] verified: no reboot pending$(grep -q '^# ---- step: nvidia-driver ' provision.sh && echo ', NVIDIA driver step done')"
