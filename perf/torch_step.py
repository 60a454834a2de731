#!/usr/bin/python3
"""The training step of `backprop bench` in PyTorch: the same MLP (nn.Linear
+ ReLU, CrossEntropyLoss), batch, optimizer (SGD lr 0.01 or Adam lr 1e-3) and
thread count (torch.set_num_threads), on random data, printing the same JSON
line (library "pytorch").

Run it with /usr/bin/python3: Debian's python3-torch imports only there.
PyTorch's fp32 Linear layers call whatever libblas.so.3 resolves to; the JSON
says which library that was ("blas") and, for OpenBLAS, its kernel ("isa",
from openblas_get_corename), so a comparison can name it.

percent_of_peak needs the FMA peak of one core measured in the same run:
pass it with --peak GFLOPS (perf/compare.sh takes it from `backprop bench`).
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import torch


def blas_in_use():
    """The BLAS library mapped into this process, and OpenBLAS's kernel."""
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            name = os.path.basename(path)
            if any(k in name for k in ("blas", "blis", "mkl")) and path.startswith("/"):
                paths.add(path)
    blas = sorted(paths)
    core = None
    for p in blas:
        try:
            lib = ctypes.CDLL(p)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            core = lib.openblas_get_corename().decode()
            break
        except (OSError, AttributeError):
            continue
    return blas, core


def quantile(sorted_ms, q):
    pos = q * (len(sorted_ms) - 1)
    lo = int(pos)
    if lo + 1 >= len(sorted_ms):
        return sorted_ms[-1]
    return sorted_ms[lo] + (pos - lo) * (sorted_ms[lo + 1] - sorted_ms[lo])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--in", dest="n_in", type=int, default=784)
    ap.add_argument("--layers", default="256,128,100")
    ap.add_argument("--out", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    ap.add_argument("--peak", type=float, default=0.0,
                    help="FMA peak of one core in GFLOP/s, measured in the same run")
    a = ap.parse_args()
    if a.steps < 1 or a.batch < 1 or a.threads < 1:
        ap.error("--steps, --batch and --threads must be >= 1")

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    widths = [a.n_in] + [int(w) for w in a.layers.split(",") if w] + [a.out]
    mods = []
    for i in range(len(widths) - 1):
        mods.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    X = torch.rand(a.batch, a.n_in)
    y = torch.randint(0, a.out, (a.batch,))

    ms = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            ms.append(dt * 1e3)
    ms.sort()
    med = statistics.median(ms)
    macs = sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1))
    gflops = 6.0 * a.batch * macs / (med * 1e-3) * 1e-9
    peak = a.peak * a.threads
    blas, core = blas_in_use()
    print(json.dumps({
        "library": "pytorch",
        "layers": "-".join(str(w) for w in widths),
        "batch": a.batch,
        "optimizer": a.optimizer,
        "threads": torch.get_num_threads(),
        "isa": core.lower() if core else "unknown",
        "steps": a.steps,
        "ms_per_step": round(med, 4),
        "p10": round(quantile(ms, 0.1), 4),
        "p90": round(quantile(ms, 0.9), 4),
        "samples_per_second": round(a.batch / (med * 1e-3), 1),
        "gflops": round(gflops, 2),
        "peak_gflops": round(peak, 2) if peak > 0 else None,
        "percent_of_peak": round(100.0 * gflops / peak, 1) if peak > 0 else None,
        "torch": torch.__version__,
        "blas": ",".join(blas) if blas else "none mapped",
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
    }, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
