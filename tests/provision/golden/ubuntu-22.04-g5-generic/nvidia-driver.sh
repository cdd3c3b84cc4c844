# check
dlenv_driver_ok 580
# apply
# NVIDIA driver 580 (open kernel modules), nouveau kept away, persistence on.
cat > /etc/modprobe.d/dlenv-blacklist-nouveau.conf <<'DLENV_EOF'
blacklist nouveau
options nouveau modeset=0
DLENV_EOF
# Canonical's signed, precompiled modules for this kernel flavour: no DKMS, Secure Boot works.
flavour=generic
dlenv_apt_install "linux-modules-nvidia-580-server-open-generic" "nvidia-utils-580-server"
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
systemctl enable --now nvidia-persistenced >/dev/null 2>&1 || nvidia-smi -pm 1
nvidia-smi
