#!/usr/bin/python3
"""`backprop train`'s default run in PyTorch, for the end-to-end comparison:
Fashion-MNIST (the IDX .gz files, read with gzip + numpy, pixels / 255), MLP
784-256-128-100-10 with ReLU, He-uniform weights (U(-a, a), a = sqrt(6 /
n_in), as backprop's default) and zero biases, softmax cross-entropy, Adam lr
1e-3, batch 128, 10 epochs, a new shuffle each epoch, the test set evaluated
after each epoch (as `backprop train` does). Prints one JSON line with the
wall time (from start to the end of training, data loading included) and the
final test accuracy. Run with /usr/bin/python3 (Debian's torch).
"""
import argparse
import gzip
import json
import os
import sys
import time

START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load(folder, prefix):
    X = read_idx(os.path.join(folder, prefix + "-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(folder, prefix + "-labels-idx1-ubyte.gz"))
    X = torch.from_numpy(X.reshape(X.shape[0], -1).astype(np.float32) / 255.0)
    return X, torch.from_numpy(y.astype(np.int64))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    Xtr, ytr = load(a.data, "train")
    Xte, yte = load(a.data, "t10k")

    widths = [Xtr.shape[1], 256, 128, 100, 10]
    mods = []
    for i in range(len(widths) - 1):
        lin = torch.nn.Linear(widths[i], widths[i + 1])
        torch.nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")  # sqrt(6 / n_in)
        torch.nn.init.zeros_(lin.bias)
        mods.append(lin)
        if i + 2 < len(widths):
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    acc = 0.0
    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(Xtr.shape[0])
        for s in range(0, Xtr.shape[0], a.batch):
            idx = order[s:s + a.batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xtr[idx]), ytr[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(Xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1} test accuracy {acc:.4f} "
              f"({time.perf_counter() - START:.1f} s)", file=sys.stderr)
    print(json.dumps({"library": "pytorch", "wall_seconds": round(time.perf_counter() - START, 2),
                      "test_accuracy": round(acc, 4), "epochs": a.epochs,
                      "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
