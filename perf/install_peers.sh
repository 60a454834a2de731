#!/bin/bash
# Install the libraries bench_gemm compares backprop against, and gnuplot for
# plot_gemm.sh. bench_gemm loads the peers with dlopen at run time, so none of
# them is needed to build; a peer that is missing is reported as "n/a".
# Packages already installed (dpkg -s) are skipped, so a re-run costs nothing.
set -euo pipefail

want=(libopenblas0-openmp libblis4-openmp libdnnl-dev gnuplot-nox)
missing=()
for p in "${want[@]}"; do
    if dpkg -s "$p" >/dev/null 2>&1; then
        echo "install_peers: $p already installed"
    else
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
# Other processes may hold the apt lock: wait for it instead of failing.
$sudo apt-get -o DPkg::Lock::Timeout=600 update
$sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
