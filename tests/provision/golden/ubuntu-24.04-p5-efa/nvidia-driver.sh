# check
dlenv_driver_ok 580 && dlenv_fabric_ok
# apply
# NVIDIA driver 580 (open kernel modules), nouveau kept away, persistence on at every boot,
# Fabric Manager on NVSwitch systems.
# Persistence mode at every boot: nvidia-persistenced's unit where the driver ships it, else a
# oneshot unit of dlenv's running `nvidia-smi -pm 1` (a runfile driver, as on AWS's DLAMIs).
dlenv_persistence_on() {
  if systemctl enable --now nvidia-persistenced >/dev/null 2>&1; then
    return 0
  fi
  cat > /etc/systemd/system/dlenv-nvidia-persistence.service <<'DLENV_EOF'
[Unit]
Description=dlenv: NVIDIA persistence mode at boot (driver without an nvidia-persistenced unit)
After=systemd-modules-load.service

[Service]
Type=oneshot
ExecStart=nvidia-smi -pm 1
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
DLENV_EOF
  systemctl daemon-reload
  systemctl enable dlenv-nvidia-persistence
  systemctl start dlenv-nvidia-persistence || nvidia-smi -pm 1
}
# GPUs behind NVSwitches (HGX A100/H100/H200): Fabric Manager of the same branch, enabled at boot;
# without it CUDA fails with error 802 ("system not yet initialized") while nvidia-smi looks fine.
dlenv_fabricmanager_on() {
  local waited=0
  # A driver installed outside apt (AWS's DLAMIs) brings its own Fabric Manager of the exact
  # same version: packages only where the unit is missing.
  if [ -z "$(systemctl list-unit-files --no-legend nvidia-fabricmanager.service 2>/dev/null)" ]; then
    dlenv_log "NVSwitches found: installing Fabric Manager"
    dlenv_apt_install nvidia-fabricmanager-580 libnvidia-nscq-580 || return 1
  fi
  systemctl enable --now nvidia-fabricmanager || return 1
  # The fabric takes a while to come up after the service starts.
  until dlenv_fabric_ok; do
    if [ "$waited" -ge 300 ]; then
      echo "Fabric Manager is running but the NVSwitch fabric is not up after ${waited}s (nvidia-smi -q: Fabric State/Status): see journalctl -u nvidia-fabricmanager" >&2
      return 1
    fi
    sleep 5; waited=$((waited + 5))
  done
}
# A working driver of the pinned branch is kept as it is (AWS's Deep Learning AMIs ship one,
# installed by NVIDIA's runfile): only persistence (and Fabric Manager) are turned on.
if dlenv_driver_branch_works 580; then
  dlenv_log "NVIDIA driver branch 580 is already installed and loaded: keeping it"
  dlenv_persistence_on
  dlenv_fabricmanager_on || exit 1
  nvidia-smi
  exit 0
fi
# Another branch installed outside apt cannot be replaced safely by packages.
other=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 || true)
if [ -n "$other" ] && ! dpkg -S "$(command -v nvidia-smi)" >/dev/null 2>&1; then
  echo "NVIDIA driver $other was installed outside apt (NVIDIA's runfile, as on AWS's Deep Learning AMIs); dlenv pins branch 580 and will not install packages over it: use an image with branch 580, or keep this driver with --skip nvidia-driver" >&2
  exit 1
fi
cat > /etc/modprobe.d/dlenv-blacklist-nouveau.conf <<'DLENV_EOF'
blacklist nouveau
options nouveau modeset=0
DLENV_EOF
# Canonical's signed, precompiled modules (no DKMS, Secure Boot works): for the kernel flavour
# (kernel upgrades) and for the running kernel itself, as Ubuntu Server's NVIDIA drivers guide
# installs them, so the driver loads now instead of after a reboot into the flavour's newest
# kernel (and a host on another kernel series does not reboot in a loop).
flavour=aws
running_modules="linux-modules-nvidia-580-server-open-6.8.0-1015-aws"
if dlenv_apt_available "$running_modules"; then
  dlenv_apt_install "linux-modules-nvidia-580-server-open-aws" "$running_modules" "nvidia-utils-580-server" "nvidia-compute-utils-580-server"
else
  dlenv_log "$running_modules is not in the archive (an older kernel): using the $flavour flavour's modules, a reboot will load them"
  dlenv_apt_install "linux-modules-nvidia-580-server-open-aws" "nvidia-utils-580-server" "nvidia-compute-utils-580-server"
fi
# Hold the kernel so an upgrade cannot boot a kernel these modules were not built for.
held=$( (dpkg-query -W -f='${Package} ${Status}\n' "linux-$flavour" "linux-image-$flavour" \
  "linux-headers-$flavour" "linux-image-$(uname -r)" 2>/dev/null || true) | awk '/install ok installed/ {print $1}')
[ -z "$held" ] || apt-mark hold $held >/dev/null
command -v update-initramfs >/dev/null && update-initramfs -u >/dev/null 2>&1 || true
if lsmod | grep -q '^nouveau'; then
  dlenv_reboot_required "nouveau is loaded: a reboot is needed before the NVIDIA driver can load"
  exit 0
fi
modprobe nvidia 2>/dev/null || true
if ! smi_out=$(nvidia-smi 2>&1); then
  if echo "$smi_out" | grep -q "Driver/library version mismatch"; then
    # An upgrade replaced the libraries while the old kernel module stays loaded.
    dlenv_reboot_required "Driver/library version mismatch: the old NVIDIA module is still loaded; rebooting to load the new one"
  else
    dlenv_reboot_required "the NVIDIA driver is installed but not loaded: a reboot is needed"
  fi
  exit 0
fi
dlenv_persistence_on
dlenv_fabricmanager_on || exit 1
nvidia-smi
dlenv_driver_ok 580
