# check
PATH="/usr/local/cuda-13.0/bin:$PATH" dlenv_nvcc_ok 13.0
cmp -s /etc/profile.d/dlenv-cuda.sh - <<'DLENV_EOF'
# dlenv: CUDA 13.0 toolkit on PATH
export PATH="/usr/local/cuda-13.0/bin:$PATH"
DLENV_EOF
# apply
# CUDA toolkit 13.0 from NVIDIA's repository (toolkit only: the driver step owns the driver).
# One already at /usr/local/cuda-13.0 (AWS's Deep Learning AMIs ship it) is kept: only the profile is added.
if PATH="/usr/local/cuda-13.0/bin:$PATH" dlenv_nvcc_ok 13.0; then
  dlenv_log "CUDA 13.0 is already installed at /usr/local/cuda-13.0: keeping it"
else
dlenv_cuda_repo ubuntu2404
dlenv_apt_install cuda-toolkit-13-0
fi
cat > /etc/profile.d/dlenv-cuda.sh <<'DLENV_EOF'
# dlenv: CUDA 13.0 toolkit on PATH
export PATH="/usr/local/cuda-13.0/bin:$PATH"
DLENV_EOF
"/usr/local/cuda-13.0/bin/nvcc" --version
