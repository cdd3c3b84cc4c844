# check
dlenv_driver_ok 580
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
# A working driver of the pinned branch is kept as it is (AWS's Deep Learning AMIs ship one,
# installed by NVIDIA's runfile): only persistence (and Fabric Manager) are turned on.
if dlenv_driver_branch_works 580; then
  dlenv_log "NVIDIA driver branch 580 is already installed and loaded: keeping it"
  dlenv_persistence_on
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
# NVIDIA's repository: open kernel modules built by DKMS for the running kernel.
dlenv_cuda_repo debian12
# DKMS needs the running kernel's headers. Debian drops them from the archive once its cloud
# kernel moves on (older images): then install the flavour's kernel and headers metapackages
# and reboot into that kernel; the step runs again there.
kernel=$(uname -r)
if ! dlenv_pkgs_installed "linux-headers-$kernel"; then
  if dlenv_apt_available "linux-headers-$kernel"; then
    dlenv_apt_install "linux-headers-$kernel"
  else
    kflavour=$(dlenv_kernel_flavour)
    if dlenv_pkgs_installed "linux-image-$kflavour" "linux-headers-$kflavour"; then
      echo "the running kernel $kernel has no headers in the archive and linux-image-$kflavour is installed but not running: reboot into it (or remove kernel $kernel), then provision again" >&2
      exit 1
    fi
    dlenv_apt_install "linux-image-$kflavour" "linux-headers-$kflavour"
    dlenv_reboot_required "linux-headers-$kernel is no longer in the archive: installed linux-image-$kflavour and linux-headers-$kflavour, rebooting into that kernel"
    exit 0
  fi
fi
# The branch pin first, in an apt call of its own (NVIDIA's driver installation guide), so that
# apt resolves the driver within branch 580 in the next call.
dlenv_apt_install nvidia-driver-pinning-580
installed=$(dlenv_pkg_version nvidia-open)
if [ -n "$installed" ] && [ "${installed#580.}" = "$installed" ]; then
  # Another branch of NVIDIA's packages (installed before the pin): bring it to the pinned one.
  dlenv_log "nvidia-open $installed is not branch 580: moving to the pinned branch"
  dlenv_apt_get_install --allow-downgrades nvidia-open nvidia-persistenced
  installed=$(dlenv_pkg_version nvidia-open)
  if [ "${installed#580.}" = "$installed" ]; then
    echo "nvidia-open $installed is still not branch 580 after installing nvidia-driver-pinning-580: remove the other branch (apt-get purge nvidia-open nvidia-driver-pinning-'*'), then provision again" >&2
    exit 1
  fi
fi
dlenv_apt_install nvidia-open nvidia-persistenced
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
nvidia-smi
dlenv_driver_ok 580
