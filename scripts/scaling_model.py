#!/usr/bin/env python3
"""Predicts how data-parallel training scales with the node count: step time, samples/s
and parallel efficiency for p = 1, 2, 4, .. 1024 ranks (one rank per node), without and
with communication/computation overlap, from a measured compute time and a network model.

    scaling_model.py --compute-per-sample S (--network NAME | --allreduce-json FILE |
                     --alpha A --beta B) [--mode strong|weak] [--global-batch B |
                     --batch-per-rank b] [--grad-bytes N] [--overlap-fraction F]
                     [--measured CSV] [--png PATH] [--json]

The model, per training step, for p ranks each computing b samples:
    compute(b)   = b * compute_per_sample          (forward + backward + update, 1 rank)
    allreduce(p) = 2(p-1)*alpha + 2((p-1)/p)*n*beta (ring allreduce of n gradient bytes;
                                                      0 at p = 1)
    no overlap:  step = compute(b) + allreduce(p)
    overlap:     step = max(compute(b), (1 - F)*compute(b) + allreduce(p))
where F (--overlap-fraction, default 0.6) is the share of the step that can run while
gradients are in flight. 0.6 is roughly the backward pass's share of a step (about 2/3 of
the multiply-adds of a dense network) less the first layer's, which finishes last: a
typical figure for networks whose weights are spread over many layers. The model lets
the whole allreduce start behind that share, so it is an upper bound on what overlap
buys. The demo network's first layer holds 85% of the weights and computes its gradient
last, so there the share is nearer 0.15 unless that gradient is sent in pieces as it is
produced, as dmlp's buckets are. dmlp overlaps with `comm.overlap: true`; by default it
allreduces all gradients after the backward pass (the "no overlap" curve).

Strong scaling (--mode strong) splits a fixed --global-batch B over the ranks (b =
ceil(B/p), the largest slice; p stops at B); weak scaling keeps --batch-per-rank b fixed
(the global batch grows as b*p). samples/s = global batch / step; efficiency = speedup / p
= samples/s(p) / (p * samples/s(1)).

Assumptions worth knowing: the compute time is linear in the batch (it is not at small
batches, where the matrix products run slower per sample: measure compute_per_sample at
the batch per rank you will use); alpha and beta measured on one node with
bench_allreduce (shared memory) are not those of a cluster's network; the presets are
round textbook figures, not measurements.

--allreduce-json reads the output of `mpirun -np P build/bench/bench_allreduce` (the line
starting with `JSON `; `-` reads stdin); --alpha and --beta override single values from it
or from --network. --measured CSV overlays measured points: a header with the columns
ranks and samples_per_s (samples per second for the whole job); efficiency against the
file's ranks=1 row, else against the model's one-rank throughput.

Prints a table (or, with --json, one JSON line instead) and writes a PNG of efficiency
against nodes (--png, default scaling_model.png; --png '' writes none). Needs python3 and
matplotlib (Debian: python3-matplotlib); draws headless (Agg).
Exit status: 0 done, 2 for a bad argument or input file.
"""

import argparse
import csv
import json
import math
import sys

# alpha (s per message step), beta (s per byte): round figures, assumed, not measured.
NETWORKS = {
    "10GbE": (20e-6, 1 / 1.25e9),
    "100GbE": (5e-6, 1 / 12.5e9),
    "HDR-IB": (1.5e-6, 1 / 25e9),
}
DEMO_GRAD_BYTES = 235146 * 4 + 64  # 784-256-128-10: 235146 float gradients, plus the loss


class InputError(Exception):
    pass


def read_allreduce_json(path):
    """(alpha, beta) from bench_allreduce output: its line starting with `JSON `."""
    try:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}")
    with f:
        lines = [line[5:] for line in f if line.startswith("JSON ")]
    if not lines:
        raise InputError(f"{path}: no line starting with 'JSON ' (bench_allreduce output?)")
    try:
        obj = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: the JSON line is malformed: {e}")
    if obj.get("bench") != "allreduce":
        raise InputError(f"{path}: the JSON line is not from bench_allreduce")
    alpha, beta = obj.get("alpha_s"), obj.get("beta_s_per_byte")
    if alpha is None or beta is None:
        raise InputError(f"{path}: alpha/beta not fitted (a {obj.get('ranks')}-rank run?): "
                         "run bench_allreduce on 2 or more ranks")
    return float(alpha), float(beta), int(obj.get("ranks", 0))


def read_measured(path):
    """[(ranks, samples_per_s)] from a CSV with those two columns."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}")
    out = []
    for i, row in enumerate(rows, start=2):
        try:
            p, sps = int(row["ranks"]), float(row["samples_per_s"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}:{i}: want columns ranks,samples_per_s with numbers")
        if p < 1 or not sps > 0:
            raise InputError(f"{path}:{i}: ranks must be >= 1 and samples_per_s > 0")
        out.append((p, sps))
    if not out:
        raise InputError(f"{path}: no rows")
    return sorted(out)


def allreduce_time(p, n_bytes, alpha, beta):
    return 0.0 if p == 1 else 2 * (p - 1) * alpha + 2 * (p - 1) / p * n_bytes * beta


def model(args, alpha, beta):
    """One dict per rank count: the columns of the table."""
    rows = []
    p = 1
    while p <= args.max_ranks and (args.mode == "weak" or p <= args.global_batch):
        if args.mode == "weak":
            b, global_batch = args.batch_per_rank, args.batch_per_rank * p
        else:  # the slowest rank, with the largest slice, sets the pace
            b, global_batch = math.ceil(args.global_batch / p), args.global_batch
        compute = b * args.compute_per_sample
        comm = allreduce_time(p, args.grad_bytes, alpha, beta)
        plain = compute + comm
        overlapped = max(compute, (1 - args.overlap_fraction) * compute + comm)
        rows.append({"ranks": p, "batch_per_rank": b, "compute_s": compute,
                     "allreduce_s": comm, "step_s": plain,
                     "samples_per_s": global_batch / plain, "step_overlap_s": overlapped,
                     "samples_per_s_overlap": global_batch / overlapped})
        p *= 2
    for r in rows:
        r["efficiency"] = r["samples_per_s"] / (r["ranks"] * rows[0]["samples_per_s"])
        r["efficiency_overlap"] = (r["samples_per_s_overlap"]
                                   / (r["ranks"] * rows[0]["samples_per_s_overlap"]))
    return rows


def print_table(args, rows, alpha, beta, source):
    batch = (f"global batch {args.global_batch}" if args.mode == "strong"
             else f"batch per rank {args.batch_per_rank}")
    print(f"# {args.mode} scaling, {batch}; compute {args.compute_per_sample * 1e6:.3g} us "
          f"per sample; gradient {args.grad_bytes} bytes; overlap fraction "
          f"{args.overlap_fraction}"
          + (f"; stops at {rows[-1]['ranks']} ranks (ranks <= global batch)"
             if args.mode == "strong" and rows[-1]["ranks"] < args.max_ranks else ""))
    print(f"# network: {source}: alpha {alpha * 1e6:.3g} us, beta {beta * 1e9:.3g} ns/byte "
          f"({1e-9 / beta:.3g} GB/s)")
    print(f"{'ranks':>6} {'b/rank':>8} {'compute':>10} {'allreduce':>10} | "
          f"{'step':>10} {'samples/s':>11} {'eff':>6} | {'step(ov)':>10} "
          f"{'samples/s':>11} {'eff':>6}")
    print(f"{'':>6} {'':>8} {'(ms)':>10} {'(ms)':>10} | {'(ms)':>10} {'':>11} {'':>6} | "
          f"{'(ms)':>10}")
    for r in rows:
        print(f"{r['ranks']:>6} {r['batch_per_rank']:>8.4g} {r['compute_s'] * 1e3:>10.4g} "
              f"{r['allreduce_s'] * 1e3:>10.4g} | {r['step_s'] * 1e3:>10.4g} "
              f"{r['samples_per_s']:>11.0f} {r['efficiency']:>6.3f} | "
              f"{r['step_overlap_s'] * 1e3:>10.4g} {r['samples_per_s_overlap']:>11.0f} "
              f"{r['efficiency_overlap']:>6.3f}")


def measured_efficiency(measured, rows):
    """[(ranks, efficiency)], against the measured one-rank point or else the model's."""
    base = dict(measured).get(1)
    if base is None:
        base = rows[0]["samples_per_s"]
        print("# measured: no ranks=1 row; efficiency against the model's one-rank "
              "throughput", file=sys.stderr)
    return [(p, sps / (p * base)) for p, sps in measured]


def plot(path, args, rows, measured_eff, source):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = [r["ranks"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    ax.plot(ranks, [r["efficiency"] for r in rows], "o-", label="no overlap (dmlp's default)")
    ax.plot(ranks, [r["efficiency_overlap"] for r in rows], "s--",
            label=f"overlap {args.overlap_fraction:g} of compute")
    if measured_eff:
        ax.plot([p for p, _ in measured_eff], [e for _, e in measured_eff], "k*",
                markersize=10, label="measured")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks)
    ax.set_xticklabels([str(p) for p in ranks])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("nodes (one rank each)")
    ax.set_ylabel("parallel efficiency (speedup / nodes)")
    batch = (f"global batch {args.global_batch}" if args.mode == "strong"
             else f"batch {args.batch_per_rank} per rank")
    ax.set_title(f"{args.mode} scaling, {batch}, {args.compute_per_sample * 1e6:.3g} us/sample,"
                 f" {args.grad_bytes / 1e6:.3g} MB gradient\nnetwork: {source}", fontsize=10)
    ax.grid(True, which="major", alpha=0.4)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv):
    nets = ", ".join(f"{k} (alpha {a * 1e6:g} us, {1e-9 / b:g} GB/s)"
                     for k, (a, b) in NETWORKS.items())
    ap = argparse.ArgumentParser(
        description="Models data-parallel scaling (ring allreduce + compute), without and "
                    "with overlap. See the module docstring (head of this file) for the model.",
        epilog=f"network presets (assumed round figures, not measurements): {nets}")
    ap.add_argument("--compute-per-sample", type=float, required=True, metavar="S",
                    help="seconds of forward+backward+update per sample on one rank, at "
                         "the thread count each rank will use: 1 / samples per second of a "
                         "one-rank run (dmlp's epoch line, bench/torch_mlp.py)")
    ap.add_argument("--mode", choices=("strong", "weak"),
                    help="strong: fixed global batch split over the ranks; weak: fixed batch "
                         "per rank (default: weak if --batch-per-rank is given, else strong)")
    ap.add_argument("--global-batch", type=int, metavar="B",
                    help="strong scaling: the global batch (default 128)")
    ap.add_argument("--batch-per-rank", type=int, metavar="b",
                    help="weak scaling: the batch each rank computes (default 128)")
    ap.add_argument("--grad-bytes", type=int, default=DEMO_GRAD_BYTES, metavar="N",
                    help="bytes allreduced per step (default %(default)s: the demo "
                         "network's 235146 float32 gradients and a little more)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--network", choices=sorted(NETWORKS), help="a preset alpha and beta")
    src.add_argument("--allreduce-json", metavar="FILE",
                     help="bench_allreduce output with its `JSON ` line (- for stdin)")
    ap.add_argument("--alpha", type=float, metavar="S", help="latency per ring step, seconds")
    ap.add_argument("--beta", type=float, metavar="S", help="seconds per byte (1/bandwidth)")
    ap.add_argument("--overlap-fraction", type=float, default=0.6, metavar="F",
                    help="share of the compute that can hide communication, in [0, 1] (default "
                         "%(default)s: about the backward of all layers but the first; an "
                         "upper bound)")
    ap.add_argument("--max-ranks", type=int, default=1024, metavar="P",
                    help="largest rank count, table rows are powers of 2 (default %(default)s)")
    ap.add_argument("--measured", metavar="CSV",
                    help="measured points to overlay: columns ranks,samples_per_s")
    ap.add_argument("--png", default="scaling_model.png", metavar="PATH",
                    help="where to draw the efficiency plot (default %(default)s; '' for none)")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON line with the parameters and the table, no table")
    args = ap.parse_args(argv)

    if args.mode is None:
        args.mode = "weak" if args.batch_per_rank is not None else "strong"
    if args.mode == "strong" and args.batch_per_rank is not None:
        ap.error("--batch-per-rank is for --mode weak; strong scaling takes --global-batch")
    if args.mode == "weak" and args.global_batch is not None:
        ap.error("--global-batch is for --mode strong; weak scaling takes --batch-per-rank")
    if args.global_batch is None:
        args.global_batch = 128
    if args.batch_per_rank is None:
        args.batch_per_rank = 128
    if not args.compute_per_sample > 0:
        ap.error("--compute-per-sample must be > 0")
    if args.global_batch < 1 or args.batch_per_rank < 1 or args.max_ranks < 1:
        ap.error("batches and --max-ranks must be >= 1")
    if args.grad_bytes < 0:
        ap.error("--grad-bytes must be >= 0")
    if not 0 <= args.overlap_fraction <= 1:
        ap.error("--overlap-fraction must be in [0, 1]")
    if args.network is None and args.allreduce_json is None and (args.alpha is None
                                                                 or args.beta is None):
        ap.error("give the network: --network NAME, --allreduce-json FILE, or --alpha and "
                 "--beta")
    for name in ("alpha", "beta"):
        v = getattr(args, name)
        if v is not None and not (v >= 0 and math.isfinite(v)):
            ap.error(f"--{name} must be a finite number >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.allreduce_json is not None:
            alpha, beta, ranks = read_allreduce_json(args.allreduce_json)
            source = f"bench_allreduce at {ranks} ranks"
        elif args.network is not None:
            (alpha, beta), source = NETWORKS[args.network], f"{args.network} preset"
        else:
            alpha = beta = None
            source = "given"
        if args.alpha is not None or args.beta is not None:
            alpha = args.alpha if args.alpha is not None else alpha
            beta = args.beta if args.beta is not None else beta
            if source != "given":
                source += ", overridden"
        if alpha < 0 or beta <= 0:
            raise InputError(f"alpha {alpha:g} s and beta {beta:g} s/byte: want alpha >= 0, "
                             "beta > 0 (a negative fit means bench_allreduce's times do not "
                             "follow the ring model)")
        measured = read_measured(args.measured) if args.measured else []
    except InputError as e:
        print(f"scaling_model.py: {e}", file=sys.stderr)
        return 2

    rows = model(args, alpha, beta)
    measured_eff = measured_efficiency(measured, rows) if measured else []
    if args.json:
        print(json.dumps({"model": "scaling", "mode": args.mode,
                          "global_batch": args.global_batch if args.mode == "strong" else None,
                          "batch_per_rank": args.batch_per_rank if args.mode == "weak" else None,
                          "compute_per_sample_s": args.compute_per_sample,
                          "grad_bytes": args.grad_bytes, "alpha_s": alpha,
                          "beta_s_per_byte": beta, "network": source,
                          "overlap_fraction": args.overlap_fraction, "rows": rows,
                          "measured": [{"ranks": p, "efficiency": e} for p, e in measured_eff]},
                         separators=(",", ":")))
    else:
        print_table(args, rows, alpha, beta, source)
        for p, e in measured_eff:
            print(f"# measured: {p} ranks, efficiency {e:.3f}")
    if args.png:
        plot(args.png, args, rows, measured_eff, source)
        if not args.json:
            print(f"# wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
