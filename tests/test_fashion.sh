#!/bin/bash
# One epoch of the default model on the real Fashion-MNIST, when the Debian
# package dataset-fashion-mnist is installed (skipped otherwise): the test
# accuracy must exceed 0.80. usage: test_fashion.sh BACKPROP
set -u
bp=$1
data=/usr/share/datasets/fashion-mnist
if [ ! -e "$data/train-images-idx3-ubyte.gz" ] && [ ! -e "$data/train-images-idx3-ubyte" ]; then
    echo "skipped: $data not installed (apt-get install dataset-fashion-mnist)"
    exit 77
fi
out=$("$bp" train --epochs 1) || { echo "FAIL: backprop train exited $?"; exit 1; }
echo "$out"
acc=$(printf '%s\n' "$out" | sed -n 's/^final test loss .* test accuracy \([0-9.]*\)$/\1/p')
if awk -v a="${acc:-0}" 'BEGIN { exit !(a > 0.80) }'; then
    echo "1 passed, 0 failed"
else
    echo "FAIL: test accuracy '$acc' after one epoch, expected > 0.80"
    exit 1
fi
