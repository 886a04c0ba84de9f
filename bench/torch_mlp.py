#!/usr/bin/env python3
"""PyTorch baseline for dmlp: the time per epoch of the demo network in plain PyTorch on
the CPU, the figure a user would compare `dmlp train` against.

    torch_mlp.py [--batch B] [--epochs E] [--threads T] [--blas-threads T] [--ddp N]
                 [--idx-dir DIR]

The network and recipe of configs/fashion_mnist.yaml: 784-256 ReLU-128 ReLU-10,
nn.CrossEntropyLoss (softmax cross-entropy), He-normal weights and zero biases, SGD with
lr 0.05, Nesterov momentum 0.9 and weight decay 1e-3 (a constant rate: the config's
cosine schedule would not change the time). The data is 60000 samples of 784 float32
features: standard-normal features with labels drawn uniformly from 0..9 (seeded) by
default, or Fashion-MNIST's training set with --idx-dir (train-images-idx3-ubyte.gz and
train-labels-idx1-ubyte.gz, e.g. in /usr/share/datasets/fashion-mnist), scaled to [0, 1]
and standardised per feature as dmlp's `normalize: standard` does. The data stays in
memory as tensors; each epoch reshuffles it (seeded, the same order in every process)
and each step indexes its slice: no DataLoader, so loading is not what is timed.

--threads T sets torch's intra-op threads, and OpenBLAS's unless --blas-threads says
otherwise: Debian's torch calls the system BLAS, whose pthread build keeps its own pool
(one thread per core by default) that torch.set_num_threads does not reach. The two pools
spin while idle, so with both at 2 threads on 2 cores they fight; --blas-threads 1 (or
OMP_WAIT_POLICY=passive) avoids it. Inter-op threads are 1. The optimizer's out-of-place
ops allocate and free large temporaries every step, which glibc hands back to the kernel
each time; MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 in the
environment stops that (it made a step ~1.4x faster on a 2-core VM). The defaults are
what is timed unless you set them: the baseline is what a user gets.

--ddp N runs N processes with DistributedDataParallel over gloo on this host, T threads
each; each step's global batch of B samples is cut into N contiguous slices, one per
process (as dmlp splits it), and the loss is scaled so the averaged gradient is the
global batch's mean.

Prints one line per epoch, a summary line with the BLAS in use and the OpenBLAS
environment (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE pick and tune its kernels), then
    JSON {"bench":"torch","batch":..,"threads":..,"blas_threads":..,"procs":..,
          "epoch_s":..,"epoch_best_s":..,"samples_per_s":..,"data":"synthetic",
          "torch":"..","blas":".."}
where epoch_s is the median epoch time without the first (warm-up) epoch when there are
two or more (the best is printed too), and samples_per_s = 60000 / epoch_s.
Needs python3 with torch and numpy (Debian: python3-torch, python3-numpy).
Exit status: 0 done, 2 for a bad argument or data file.
"""

import argparse
import ctypes
import gzip
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

SAMPLES, FEATURES, CLASSES = 60000, 784, 10
SEED = 42
# What picks OpenBLAS's kernels, the threads' and the allocator's behaviour: printed.
ENV_SHOWN = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
             "OMP_WAIT_POLICY", "MALLOC_MMAP_THRESHOLD_")


class DataError(Exception):
    pass


def read_idx(path, want_dims):
    """A gzip'd IDX file of unsigned bytes as a numpy array with want_dims dimensions."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: {e}")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != want_dims:
        raise DataError(f"{path}: not an IDX file of unsigned bytes with {want_dims} dims")
    head = 4 + 4 * want_dims
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(want_dims))
    if len(raw) != head + int(np.prod(dims)):
        raise DataError(f"{path}: {len(raw) - head} data bytes for dimensions {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def load_data(idx_dir):
    """(features float32 [60000, 784], labels int64 [60000]), in memory."""
    if idx_dir is None:
        g = torch.Generator().manual_seed(SEED)
        x = torch.randn(SAMPLES, FEATURES, generator=g)
        y = torch.randint(0, CLASSES, (SAMPLES,), generator=g)
        return x, y
    images = read_idx(os.path.join(idx_dir, "train-images-idx3-ubyte.gz"), 3)
    labels = read_idx(os.path.join(idx_dir, "train-labels-idx1-ubyte.gz"), 1)
    if images.shape[0] != labels.shape[0] or images.shape[1] * images.shape[2] != FEATURES:
        raise DataError(f"{idx_dir}: {images.shape} images for {labels.shape[0]} labels, "
                        f"want N x 28 x 28 and N labels")
    x = images.reshape(-1, FEATURES).astype(np.float64) / 255.0
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-6 * np.maximum(1.0, np.abs(mean))] = 1.0  # constant pixels: as dmlp does
    x = ((x - mean) / std).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


def openblas():
    """The OpenBLAS library loaded into this process (ctypes), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = [line.split()[-1] for line in f if "libopenblas" in line]
    except OSError:
        return None
    if not paths:
        return None
    lib = ctypes.CDLL(paths[0])
    lib.openblas_get_config.restype = ctypes.c_char_p
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib


def set_threads(threads, blas_threads):
    """Sets torch's and OpenBLAS's thread counts; returns a description of the BLAS."""
    torch.set_num_threads(threads)
    lib = openblas()
    if lib is not None:
        lib.openblas_set_num_threads(blas_threads)
        return (f"{lib.openblas_get_config().decode()}, core "
                f"{lib.openblas_get_corename().decode()}, "
                f"{lib.openblas_get_num_threads()} thread(s)")
    info = [s for s in torch.__config__.show().replace(",", "\n").splitlines()
            if "BLAS_INFO" in s]
    return info[0].strip() if info else "unknown"


def make_model():
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(FEATURES, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                          nn.Linear(128, CLASSES))
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return model


def train(rank, procs, args, init_method, data=None):
    """Trains for args.epochs; rank 0 prints. One process, or one of --ddp N (which load
    the data themselves: data is None)."""
    torch.set_num_interop_threads(1)
    blas = set_threads(args.threads, args.blas_threads)
    if procs > 1:
        dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=procs)
    x, y = data if data is not None else load_data(args.idx_dir)
    model = make_model()
    net = nn.parallel.DistributedDataParallel(model) if procs > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=1e-3)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    shuffle = torch.Generator().manual_seed(SEED + 1)

    times = []
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(SAMPLES, generator=shuffle)
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        if procs > 1:
            dist.barrier()
        t0 = time.perf_counter()
        for start in range(0, SAMPLES, args.batch):
            batch = order[start:start + args.batch]
            n = batch.numel()
            mine = batch[rank * n // procs:(rank + 1) * n // procs]
            xb, yb = x[mine], y[mine]
            out = net(xb)
            # Summed over the slice, times procs / n: DDP's mean over the processes then
            # makes it the mean over the global batch, whatever the slices' sizes.
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            (loss * (procs / n)).backward()
            opt.step()
            loss_sum += loss.detach()
            correct += (out.detach().argmax(dim=1) == yb).sum()
        if procs > 1:
            dist.barrier()
        times.append(time.perf_counter() - t0)
        if procs > 1:
            stats = torch.stack([loss_sum, correct.to(loss_sum.dtype)])
            dist.all_reduce(stats)
            loss_sum, correct = stats[0], stats[1]
        if rank == 0:
            print(f"epoch {epoch}: {times[-1]:.3f} s, {SAMPLES / times[-1]:.0f} samples/s, "
                  f"train loss {loss_sum.item() / SAMPLES:.4f}, "
                  f"accuracy {correct.item() / SAMPLES:.4f}", flush=True)

    timed = times[1:] if len(times) > 1 else times
    epoch_s = statistics.median(timed)
    if rank == 0:
        env = ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in ENV_SHOWN)
        print(f"torch {torch.__version__}, {procs} process(es) x {args.threads} thread(s) "
              f"({args.blas_threads} in BLAS), "
              f"batch {args.batch}, {'Fashion-MNIST' if args.idx_dir else 'synthetic'} data: "
              f"epoch {epoch_s:.3f} s median, {min(timed):.3f} s best"
              f"{' (first epoch excluded)' if len(times) > 1 else ''}, "
              f"{SAMPLES / epoch_s:.0f} samples/s; BLAS: {blas}; {env}; "
              f"load average {os.getloadavg()[0]:.2f}")
        print("JSON " + json.dumps({"bench": "torch", "batch": args.batch,
                                    "threads": args.threads,
                                    "blas_threads": args.blas_threads, "procs": procs,
                                    "epoch_s": round(epoch_s, 6),
                                    "epoch_best_s": round(min(timed), 6),
                                    "samples_per_s": round(SAMPLES / epoch_s, 1),
                                    "data": "fashion-mnist" if args.idx_dir else "synthetic",
                                    "torch": torch.__version__, "blas": blas},
                                   separators=(",", ":")), flush=True)
    if procs > 1:
        dist.destroy_process_group()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="PyTorch CPU baseline: epoch time of dmlp's demo network "
                    "(784-256-128-10, SGD Nesterov) on 60000 samples.")
    ap.add_argument("--batch", type=int, default=128, help="global batch (default 128)")
    ap.add_argument("--epochs", type=int, default=2,
                    help="epochs; the first is a warm-up when there are 2+ (default 2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch (and OpenBLAS) threads per process (default 1)")
    ap.add_argument("--blas-threads", type=int, metavar="T",
                    help="OpenBLAS threads per process (default: --threads)")
    ap.add_argument("--ddp", type=int, default=1, metavar="N",
                    help="processes, DistributedDataParallel over gloo (default 1: plain)")
    ap.add_argument("--idx-dir", metavar="DIR",
                    help="Fashion-MNIST's gzip'd IDX training files instead of synthetic data")
    args = ap.parse_args(argv)
    if args.blas_threads is None:
        args.blas_threads = args.threads
    if min(args.batch, args.epochs, args.threads, args.blas_threads, args.ddp) < 1:
        ap.error("--batch, --epochs, --threads, --blas-threads and --ddp must be >= 1")
    if args.batch < args.ddp:
        ap.error("--batch must be at least --ddp: every process needs a sample")
    data = None
    if args.idx_dir is not None:
        try:  # fail here, not in N processes
            data = load_data(args.idx_dir)
        except DataError as e:
            print(f"torch_mlp.py: {e}", file=sys.stderr)
            return 2

    if args.ddp == 1:
        train(0, 1, args, None, data)
        return 0
    with tempfile.TemporaryDirectory(prefix="torch_mlp.") as tmp:
        mp.spawn(train, args=(args.ddp, args, "file://" + os.path.join(tmp, "rendezvous")),
                 nprocs=args.ddp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
