#!/usr/bin/env python3
"""Draws a dmlp sweep's metric against each of its grid keys.

    scripts/plot_sweep.py runs/sweep/sweep.jsonl [--out sweep.png] [--metric val_loss]

One panel per key (the keys of the members' "settings"; training.seed included when the
sweep had --seeds): every finished member is a point, at its value of that key (on a log
axis when every value is a positive number spanning a factor of 10 or more; as categories
when the values are not numbers). The metric is val_loss, else train_loss (--metric picks
another field of sweep.jsonl, e.g. test_accuracy). Failed members are listed, not drawn.
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import json
import math
import sys


def number(v):
    try:
        return float(v)
    except ValueError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("jsonl", help="the sweep's sweep.jsonl (in its checkpoint.dir)")
    ap.add_argument("--out", default=None, help="the PNG to write (default: beside jsonl)")
    ap.add_argument("--metric", default=None, help="a field of sweep.jsonl (default: "
                    "val_loss, else train_loss)")
    a = ap.parse_args()
    try:
        rows = [json.loads(line) for line in open(a.jsonl) if line.strip()]
    except (OSError, ValueError) as e:
        sys.exit(f"plot_sweep.py: {a.jsonl}: {e}")
    done = [r for r in rows if r.get("status") == "done"]
    for r in rows:
        if r.get("status") != "done":
            print(f"member {r.get('member')}: {r.get('status')}: {r.get('message', '')}")
    if not done:
        sys.exit(f"plot_sweep.py: {a.jsonl}: no finished member to draw")
    metric = a.metric or ("val_loss" if any(r.get("val_loss") is not None for r in done)
                          else "train_loss")
    keys = sorted({k for r in done for k in r["settings"]})
    if not keys:
        sys.exit(f"plot_sweep.py: {a.jsonl}: the members have no settings to draw against")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        vals = [r["settings"].get(key) for r in done]
        ys = [r.get(metric) for r in done]
        nums = [number(v) for v in vals]
        if all(n is not None for n in nums):
            xs = nums
            pos = [x for x in xs if x > 0]
            if len(pos) == len(xs) and max(xs) >= 10 * min(xs):
                ax.set_xscale("log")
        else:
            cats = sorted(set(vals))
            xs = [cats.index(v) for v in vals]
            ax.set_xticks(range(len(cats)), cats, rotation=30)
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=24)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{len(done)} finished members of {len(rows)}: {metric} against each key")
    fig.tight_layout()
    out = a.out or a.jsonl.rsplit(".", 1)[0] + ".png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
