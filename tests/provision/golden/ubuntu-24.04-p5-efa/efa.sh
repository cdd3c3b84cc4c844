# check
# The pinned EFA installer's packages are in place and libfabric sees an EFA device.
grep -qs 'EFA installer version: 1.41.0' /opt/amazon/efa_installed_packages
/opt/amazon/efa/bin/fi_info -p efa -t FI_EP_RDM >/dev/null 2>&1
# apply
# EFA software from AWS's installer 1.41.0 (sha256-pinned): the EFA kernel
# driver, rdma-core, libfabric with the efa provider and Open MPI, as the EC2 user guide installs
# them. Rendered only for nodes launched with an EFA interface (`dlenv up --nodes N --efa`).
dlenv_apt_install curl ca-certificates
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL --retry 3 -o "$work/efa.tar.gz" https://efa-installer.amazonaws.com/aws-efa-installer-1.41.0.tar.gz
echo "3506354cdfbe31ff552fe75f5d0d9bb7efd29cf79bd99457347d29c751c38f9f  $work/efa.tar.gz" | sha256sum -c --status - || {
  echo "the EFA installer download does not match its pinned sha256 (3506354cdfbe31ff552fe75f5d0d9bb7efd29cf79bd99457347d29c751c38f9f)" >&2
  exit 1
}
tar -xzf "$work/efa.tar.gz" -C "$work"
(cd "$work/aws-efa-installer" && ./efa_installer.sh -y)
# The installer's kernel module is picked up at boot; load it now, else ask for the reboot.
modprobe efa 2>/dev/null || true
if ! /opt/amazon/efa/bin/fi_info -p efa -t FI_EP_RDM >/dev/null 2>&1; then
  dlenv_reboot_required "the EFA driver is installed; libfabric sees the device after a reboot"
fi
