#!/bin/bash
# Install the peers of the end-to-end training comparison (perf/compare.sh):
# PyTorch and numpy (Debian's, importable under /usr/bin/python3 only) and
# oneDNN's headers and library (perf/onednn_step.c links it). Packages that
# dpkg -s shows installed are skipped, so a re-run costs nothing.
set -euo pipefail

want=(python3-torch python3-numpy libdnnl-dev)
missing=()
for p in "${want[@]}"; do
    if dpkg -s "$p" >/dev/null 2>&1; then
        echo "install_e2e_peers: $p already installed"
    else
        missing+=("$p")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
# Other processes may hold the apt lock: wait for it instead of failing.
$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
$sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
