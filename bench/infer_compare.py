#!/usr/bin/env python3
"""Times the baselines of bench_infer on the same network (a dmlp checkpoint): numpy
(x @ W.T + b per layer, relu, softmax) and PyTorch (torch.inference_mode, nn.Linear), and
dmlp's Python package, for 1, 8 and 64 rows per call (median seconds of a call) and rows
per second for 10,000 rows. Threads: 1 for PyTorch (torch.set_num_threads) and whatever
OMP_NUM_THREADS/OPENBLAS_NUM_THREADS say for numpy. Prints a table and one JSON line.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 bench/infer_compare.py CKPT [--no-torch]
"""
import json
import os
import sys
import time

import h5py
import numpy as np


def load(path):
    with h5py.File(path) as f:
        layers = []
        for i in range(len(f["/layers"])):
            g = f[f"/layers/{i}"]
            layers.append((g["weight"][...], g["bias"][...],
                           g.attrs["activation"].decode() if isinstance(g.attrs["activation"], bytes)
                           else str(g.attrs["activation"])))
        norm = None
        if "/normalization" in f:
            norm = (f["/normalization/mean"][...], f["/normalization/std"][...])
    return layers, norm


def numpy_net(layers, norm):
    def run(x):
        if norm is not None:
            x = (x - norm[0]) / norm[1]
        for w, b, act in layers:
            x = x @ w.T + b
            if act == "relu":
                x = np.maximum(x, 0)
            elif act == "softmax":
                x = np.exp(x - x.max(axis=1, keepdims=True))
                x /= x.sum(axis=1, keepdims=True)
        return x
    return run


def torch_net(layers, norm):
    import torch
    torch.set_num_threads(1)
    mods = []
    for w, b, act in layers:
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data = torch.from_numpy(w.copy())
        lin.bias.data = torch.from_numpy(b.copy())
        mods.append(lin)
        mods.append(torch.nn.ReLU() if act == "relu" else torch.nn.Softmax(dim=1))
    net = torch.nn.Sequential(*mods).eval()
    mean = torch.from_numpy(norm[0]) if norm is not None else None
    std = torch.from_numpy(norm[1]) if norm is not None else None

    def run(x):
        with torch.inference_mode():
            t = torch.from_numpy(x)
            if mean is not None:
                t = (t - mean) / std
            return net(t).numpy()
    return run


def median_call(run, x):
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            run(x)
        if time.perf_counter() - t0 > 0.007 or reps > 1 << 16:
            break
        reps *= 2
    samples = []
    for _ in range(41):
        t0 = time.perf_counter()
        for _ in range(reps):
            run(x)
        samples.append((time.perf_counter() - t0) / reps)
    return sorted(samples)[len(samples) // 2]


def main():
    path = sys.argv[1]
    layers, norm = load(path)
    rng = np.random.default_rng(3)
    big = rng.random((10000, layers[0][0].shape[1]), dtype=np.float32)
    runs = {"numpy": numpy_net(layers, norm)}
    if "--no-torch" not in sys.argv:
        try:
            runs["pytorch"] = torch_net(layers, norm)
        except ImportError:
            print("(no PyTorch: python3-torch)")
    try:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
        import dmlp
        net = dmlp.Net(path)
        runs["dmlp (python)"] = net.predict
    except Exception as e:  # the table still shows the baselines
        print(f"(dmlp package not used: {e})")
    result = {"bench": "infer_compare"}
    print(f"  {'':16} {'1 row us':>10} {'8 rows us':>10} {'64 rows us':>11} {'10000 rows/s':>13}")
    for name, run in runs.items():
        t = [median_call(run, big[:n]) for n in (1, 8, 64)]
        tb = median_call(run, big)
        print(f"  {name:16} {t[0] * 1e6:10.2f} {t[1] * 1e6:10.2f} {t[2] * 1e6:11.2f} "
              f"{10000 / tb:13.0f}")
        result[name] = {"us_1": t[0] * 1e6, "us_8": t[1] * 1e6, "us_64": t[2] * 1e6,
                        "rows_per_s_10000": 10000 / tb}
    print("JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
