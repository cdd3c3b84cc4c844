#!/usr/bin/env bash
# Runs on the builder (as root) after the scripts directory is uploaded, before provision.sh.
#   DLENV_SCRIPTS     where the directory `dlenv ami script --out DIR` wrote was uploaded
#   DLENV_LOGIN_USER  the image's login user (tag dlenv:user, the user `dlenv up` connects as)
# Checks that the scripts fit this image, then moves a wheelhouse/, installers/ and uploads/ (the
# --ca-bundle as a file) shipped in the directory to where the scripts expect them. Changes
# nothing when a check fails.
set -euo pipefail
cd "${DLENV_SCRIPTS:?}"
login=${DLENV_LOGIN_USER:?}

setting() { sed -n "s/^export $1=//p" provision.sh | head -1 | tr -d "'"; }

user=$(setting DLENV_USER)
if [ "$user" != "$login" ]; then
  echo "the scripts were rendered for user ${user:-?}, but this image's login user is $login:" \
    "render them again with \`dlenv ami script --user $login\` (the environment and Jupyter" \
    "belong to the user \`dlenv up\` logs in as)" >&2
  exit 1
fi
root=$(setting DLENV_ROOT)
wheelhouse=$(setting DLENV_WHEELHOUSE)
if [ -n "$wheelhouse" ] && [ ! -d wheelhouse ] && [ ! -d "$wheelhouse" ]; then
  echo "the scripts install from a wheelhouse ($wheelhouse): copy the wheels into" \
    "DIR/wheelhouse next to provision.sh before \`packer build\`" >&2
  exit 1
fi
if grep -q 'dlenv-extra-ca.crt' provision.sh && [ ! -f uploads/dlenv-extra-ca.crt ] \
    && [ ! -f "${root:?}/uploads/dlenv-extra-ca.crt" ]; then
  echo "the scripts trust a --ca-bundle, but uploads/dlenv-extra-ca.crt is missing:" \
    "upload the whole directory \`dlenv ami script --out DIR\` wrote" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then echo 'run this script as root' >&2; exit 1; fi
for d in wheelhouse installers uploads; do
  if [ -d "$d" ]; then
    mkdir -p "${root:?}"
    rm -rf "${root:?}/$d"
    mv "$d" "$root/$d"
    echo "[dlenv] $d uploaded to $root/$d ($(find "$root/$d" -type f | wc -l) files)"
  fi
done
