#!/usr/bin/env python3
"""Outside check: dmlp's surrogate losses and weights against PyTorch's own.

The same network (4 -> 16 tanh -> k), the same initial weights (made here, loaded by
`dmlp train --init-from`), the same data in the same order (shuffle off), plain SGD for
3 epochs of batch 16 over 50 rows, and 2 epochs of 10 L-BFGS iterations: dmlp's final
weights must match torch's to 5e-5 relative (max |Δw| / max |w| per tensor). Longer
L-BFGS runs drift apart as any two float32 implementations of it do on a non-convex loss
(PyTorch takes its dot products in float32, dmlp in double). The losses are PyTorch's modules: nn.MSELoss, nn.L1Loss and nn.HuberLoss with
reduction="none", summed over the outputs with per-output weights and averaged over the
batch by Σω·ℓ / Σω with the file's /weights; and nn.CrossEntropyLoss(weight=class
weights), whose mean divides by the sum of the weights.

Needs python3-torch (scripts/install-deps.sh --bench); not part of the ctest suite.

usage: tests/interop/torch_losses.py [DMLP_BINARY]    (default: build/bin/dmlp)
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DMLP = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bin", "dmlp")
N, D, H, B, EPOCHS, LR = 50, 4, 16, 16, 3, 0.05
TOL = 5e-5

torch.set_num_threads(1)
rng = np.random.default_rng(7)
X = rng.normal(size=(N, D)).astype(np.float32)
T = np.stack([1.5 * X[:, 0] - X[:, 1], X[:, 2] * X[:, 3] + 0.1 * rng.normal(size=N)], 1)
T[5, 1] += 8.0  # an outlier
T = T.astype(np.float32)
W = rng.uniform(0.0, 2.0, N).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int32) + (X[:, 2] > 1.0).astype(np.int32)


def rel_diff(got, want):
    """max |got − want| / max |want| per tensor, the worst tensor: the measure of the C
    tests (tu_max_rel_diff), relative to each weight matrix's scale."""
    return max(float(np.max(np.abs(g - w)) / np.max(np.abs(w))) for g, w in zip(got, want))


def dmlp_train(cfg, init, tmp):
    """`dmlp train cfg --init-from init` into tmp/run; the final /layers, then run removed."""
    run = subprocess.run([DMLP, "train", cfg, "--init-from", init, "--quiet"],
                         capture_output=True, text=True)
    if run.returncode:
        sys.exit("dmlp train failed:\n" + run.stdout + run.stderr)
    with h5py.File(os.path.join(tmp, "run", "latest.h5"), "r") as f:
        got = [f["layers/%d/%s" % (i, n)][()] for i in (0, 1) for n in ("weight", "bias")]
    subprocess.run(["rm", "-rf", os.path.join(tmp, "run")], check=True)
    return got


def write_data(path, answers, weights):
    with h5py.File(path, "w") as f:
        f["features"] = X
        if answers.ndim == 2:
            f["targets"] = answers
        else:
            f["labels"] = answers
        if weights is not None:
            f["weights"] = weights


def write_init(path, k, act):
    g = torch.Generator().manual_seed(3)
    w0 = (torch.randn(H, D, generator=g) * 0.5).numpy()
    b0 = (torch.randn(H, generator=g) * 0.1).numpy()
    w1 = (torch.randn(k, H, generator=g) * 0.3).numpy()
    b1 = (torch.randn(k, generator=g) * 0.1).numpy()
    with h5py.File(path, "w") as f:
        for i, (w, b, a) in enumerate(((w0, b0, "tanh"), (w1, b1, act))):
            grp = f.create_group("layers/%d" % i)
            grp["weight"] = w.astype(np.float32)
            grp["bias"] = b.astype(np.float32)
            grp.attrs["activation"] = np.bytes_(a)
    return [torch.tensor(v, requires_grad=True) for v in (w0, b0, w1, b1)]


def torch_train(params, loss_fn, answers, weights):
    opt = torch.optim.SGD(params, lr=LR)
    x = torch.tensor(X)
    for _ in range(EPOCHS):
        for s in range(0, N, B):
            xb = x[s:s + B]
            z = torch.tanh(xb @ params[0].T + params[1]) @ params[2].T + params[3]
            opt.zero_grad()
            loss_fn(z, answers[s:s + B], None if weights is None else weights[s:s + B]).backward()
            opt.step()
    return [p.detach().numpy() for p in params]


def regression(module, out_w):
    ow = torch.tensor(out_w)

    def fn(z, t, w):
        per_sample = (module(z, t) * ow).sum(1)  # summed over the outputs
        return (per_sample * w).sum() / w.sum()
    return fn


def check_lbfgs(tmp):
    """optimizer lbfgs against torch.optim.LBFGS(line_search_fn="strong_wolfe"): 2 epochs
    (two step() calls) of 10 iterations, history 5, on the full batch, huber with weights."""
    data = os.path.join(tmp, "data.h5")
    write_data(data, T, W)
    init = os.path.join(tmp, "init.h5")
    params = write_init(init, 2, "linear")
    cfg = os.path.join(tmp, "c.yaml")
    with open(cfg, "w") as f:
        f.write("model:\n  layers:\n    - {units: %d, activation: tanh}\n"
                "    - {units: 2, activation: linear}\n" % H)
        f.write("loss: huber\noptimizer: {name: lbfgs, lr: 1, max_iter: 10, history: 5}\n")
        f.write("data: {train: %s}\ntraining: {epochs: 2}\n" % data)
        f.write("checkpoint: {dir: %s/run, every_epochs: 0}\n" % tmp)
    got = dmlp_train(cfg, init, tmp)
    opt = torch.optim.LBFGS(params, lr=1, max_iter=10, history_size=5,
                            line_search_fn="strong_wolfe")
    x, t, w = torch.tensor(X), torch.tensor(T), torch.tensor(W)
    huber = torch.nn.HuberLoss(reduction="none", delta=1.0)

    def closure():
        opt.zero_grad()
        z = torch.tanh(x @ params[0].T + params[1]) @ params[2].T + params[3]
        loss = (huber(z, t).sum(1) * w).sum() / w.sum()
        loss.backward()
        return loss
    for _ in range(2):
        opt.step(closure)
    want = [p.detach().numpy() for p in params]
    worst = rel_diff(got, want)
    print("%-48s max relative difference from PyTorch %.2g" %
          ("lbfgs strong_wolfe, huber, /weights", worst))
    return worst


def main():
    cases = [
        ("mse, loss_weights [1, 3], /weights", "mse\nloss_weights: [1, 3]",
         regression(torch.nn.MSELoss(reduction="none"), [1.0, 3.0]), True, None),
        ("mae, /weights", "mae", regression(torch.nn.L1Loss(reduction="none"), [1.0, 1.0]),
         True, None),
        ("huber delta 0.5, loss_weights [2, 0.5], /weights",
         "huber\nloss_delta: 0.5\nloss_weights: [2, 0.5]",
         regression(torch.nn.HuberLoss(reduction="none", delta=0.5), [2.0, 0.5]), True, None),
        ("cross_entropy, class_weights [1, 2.5, 0.5]", "cross_entropy",
         None, False, [1.0, 2.5, 0.5]),
    ]
    worst_all = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, loss_yaml, fn, weighted, cw in cases:
            classify = cw is not None
            k = 3 if classify else 2
            data = os.path.join(tmp, "data.h5")
            write_data(data, Y if classify else T, W if weighted else None)
            params = write_init(os.path.join(tmp, "init.h5"), k, "softmax" if classify else "linear")
            cfg = os.path.join(tmp, "c.yaml")
            with open(cfg, "w") as f:
                f.write("model:\n  layers:\n    - {units: %d, activation: tanh}\n"
                        "    - {units: %d, activation: %s}\n" % (H, k, "softmax" if classify else "linear"))
                f.write("loss: %s\noptimizer: {name: sgd, lr: %g}\n" % (loss_yaml, LR))
                f.write("data: {train: %s, shuffle: false%s}\n"
                        % (data, ", class_weights: [%s]" % ", ".join(map(str, cw)) if classify else ""))
                f.write("training: {epochs: %d, batch_size: %d}\n" % (EPOCHS, B))
                f.write("checkpoint: {dir: %s/run, every_epochs: 0}\n" % tmp)
            got = dmlp_train(cfg, os.path.join(tmp, "init.h5"), tmp)
            if classify:
                ce = torch.nn.CrossEntropyLoss(weight=torch.tensor(cw))
                fn = lambda z, y, w: ce(z, y)  # noqa: E731
                answers = torch.tensor(Y, dtype=torch.long)
            else:
                answers = torch.tensor(T)
            want = torch_train(params, fn, answers, torch.tensor(W) if weighted else None)
            worst = rel_diff(got, want)
            print("%-48s max relative difference from PyTorch %.2g" % (name, worst))
            worst_all = max(worst_all, worst)
        worst_all = max(worst_all, check_lbfgs(tmp))
    print("PASSED" if worst_all <= TOL else "FAILED", "(tolerance %g)" % TOL)
    sys.exit(0 if worst_all <= TOL else 1)


if __name__ == "__main__":
    main()
