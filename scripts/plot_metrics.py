#!/usr/bin/env python3
"""Plots a dmlp run's metrics.jsonl: loss and accuracy against epoch, side by side.

    plot_metrics.py runs/NAME/metrics.jsonl [-o OUT.png] [--title TEXT]

metrics.jsonl (written by `dmlp train` into checkpoint.dir) holds one JSON object per line:
a start line {"event": "start", "config": "<yaml>", "ranks": N, "threads": T, ...} each
time training starts or resumes, then one line per epoch {"event": "epoch", "epoch": 1,
"step": .., "lr": .., "train_loss": .., "train_accuracy": .., "val_loss": ..,
"val_accuracy": .., "test_loss": .., "test_accuracy": .., "samples_per_second": ..,
"epoch_seconds": ..}. Absent or null values are skipped; lines of other events are ignored.
When a resumed run logs an epoch again, the later line wins, and each resume is marked.
Without accuracies (regression) the right panel shows the learning rate instead.

The default output is the input's name with .png for .jsonl (runs/NAME/metrics.png).
Needs python3 and matplotlib (Debian: python3-matplotlib); draws headless (Agg).
Exit status: 0 done, 2 for a missing, empty or malformed file (naming the line).
"""

import argparse
import json
import math
import os
import re
import sys

SERIES = ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
          "test_accuracy", "samples_per_second", "epoch_seconds", "step")


class MetricsError(Exception):
    pass


def _number(v):
    """A finite or non-finite float from a JSON value; None for absent/null/non-numbers."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v.strip().lower() in ("nan", "inf", "-inf", "infinity",
                                                   "-infinity"):
        return float(v)
    return None


def read_metrics(path):
    """Returns (starts, epochs): the start lines (dicts, with "_line" and "_after_epoch"),
    and {epoch: {key: float}} with the last line logged for each epoch."""
    if not os.path.exists(path):
        raise MetricsError("%s: no such file" % path)
    if os.path.isdir(path):
        raise MetricsError("%s: is a directory (give its metrics.jsonl)" % path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise MetricsError("%s: cannot read: %s" % (path, exc.strerror or exc))
    if not raw.strip():
        raise MetricsError("%s: empty file (no start or epoch lines yet)" % path)
    starts, epochs = [], {}
    last_epoch = 0
    lines = raw.split(b"\n")
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MetricsError("%s:%d: not UTF-8 text (byte %d)" % (path, no, exc.start))
        try:
            obj = json.loads(text)
        except ValueError as exc:
            # The last line of a run killed mid-write can be cut short: say so.
            hint = " (a truncated last line?)" if no >= len(lines) - 1 and no > 1 else ""
            raise MetricsError("%s:%d: not valid JSON%s: %s" % (path, no, hint, exc))
        if not isinstance(obj, dict):
            raise MetricsError("%s:%d: expected a JSON object, got %s"
                               % (path, no, type(obj).__name__))
        event = obj.get("event")
        if event is None and "epoch" in obj and "train_loss" in obj:
            event = "epoch"
        if event == "start":
            obj = dict(obj)
            obj["_line"] = no
            obj["_after_epoch"] = last_epoch
            starts.append(obj)
        elif event == "epoch":
            e = _number(obj.get("epoch"))
            if e is None or e != int(e) or e < 0:
                raise MetricsError("%s:%d: an epoch line needs an integer \"epoch\", got %r"
                                   % (path, no, obj.get("epoch")))
            e = int(e)
            values = {}
            for k in SERIES:
                v = _number(obj.get(k))
                if v is not None:
                    values[k] = v
            epochs[e] = values
            last_epoch = e
        elif not isinstance(event, str):
            raise MetricsError("%s:%d: no \"event\" key (expected \"start\" or \"epoch\")"
                               % (path, no))
        # other events (e.g. "end", "stop") are ignored
    if not epochs:
        raise MetricsError("%s: no epoch lines (%d start line%s): nothing to plot yet"
                           % (path, len(starts), "" if len(starts) == 1 else "s"))
    return starts, epochs


def _config_summary(yaml_text):
    """A short description of the network and optimizer from the start line's config.
    Uses PyYAML when present, else reads dmlp's own block-style YAML with patterns."""
    if not isinstance(yaml_text, str) or not yaml_text.strip():
        return None
    cfg = None
    try:
        import yaml  # optional
        cfg = yaml.safe_load(yaml_text)
    except Exception:
        cfg = None
    layers, opt, lr, batch, loss, sched = [], None, None, None, None, None
    if isinstance(cfg, dict):
        for L in (cfg.get("model") or {}).get("layers") or []:
            if isinstance(L, dict):
                layers.append((L.get("units"), L.get("activation")))
        o = cfg.get("optimizer") or {}
        opt, lr = o.get("name"), o.get("lr")
        sched = (o.get("schedule") or {}).get("name")
        batch = (cfg.get("training") or {}).get("batch_size")
        loss = cfg.get("loss")
    else:
        for m in re.finditer(r"units:\s*(\d+)\s*[,\n]\s*activation:\s*(\w+)", yaml_text):
            layers.append((int(m.group(1)), m.group(2)))
        m = re.search(r"^optimizer:\s*\n\s+name:\s*(\w+)", yaml_text, re.M)
        opt = m.group(1) if m else None
        m = re.search(r"^optimizer:(?:\n\s+.*)*?\n\s+lr:\s*([^\s#]+)", yaml_text, re.M)
        lr = m.group(1) if m else None
        m = re.search(r"^\s+batch_size:\s*(\d+)", yaml_text, re.M)
        batch = m.group(1) if m else None
        m = re.search(r"^loss:\s*(\w+)", yaml_text, re.M)
        loss = m.group(1) if m else None
        m = re.search(r"^\s+schedule:\s*\n\s+name:\s*(\w+)", yaml_text, re.M)
        sched = m.group(1) if m else None
    parts = []
    if layers:
        parts.append("layers " + "-".join(str(u) for u, _ in layers) + " ("
                     + ", ".join(sorted(set(str(a) for _, a in layers),
                                        key=[str(a) for _, a in layers].index)) + ")")
    if loss:
        parts.append(str(loss))
    if opt:
        s = str(opt)
        if lr is not None:
            s += " lr %s" % lr
        if sched and sched != "constant":
            s += " (%s)" % sched
        parts.append(s)
    if batch is not None:
        parts.append("batch %s" % batch)
    return ", ".join(parts) if parts else None


def _title(path, starts, epochs, override):
    if override:
        return override
    run = os.path.dirname(os.path.normpath(path)) or os.path.basename(os.getcwd())
    head = "dmlp run: %s" % run
    info = []
    s0 = starts[0] if starts else {}
    if s0.get("dmlp_version"):
        head += " (dmlp %s)" % s0["dmlp_version"]
    ranks, threads = s0.get("ranks"), s0.get("threads")
    if ranks is not None or threads is not None:
        info.append("%s rank%s x %s thread%s" % (ranks if ranks is not None else "?",
                                                 "" if ranks == 1 else "s",
                                                 threads if threads is not None else "?",
                                                 "" if threads == 1 else "s"))
    cfg = _config_summary(starts[-1].get("config")) if starts else None
    if cfg:
        info.append(cfg)
    n_resumes = max(0, len(starts) - 1)
    if n_resumes:
        scales = {(s.get("ranks"), s.get("threads")) for s in starts}
        info.append("%d resume%s%s" % (n_resumes, "" if n_resumes == 1 else "s",
                                       " (rank/thread counts changed)" if len(scales) > 1
                                       else ""))
    if s0.get("time"):
        info.append("started %s" % str(s0["time"]).replace("T", " ").rstrip("Z"))
    return head + ("\n" + " · ".join(info) if info else "")


def plot(path, out, title=None, dpi=120):
    starts, epochs = read_metrics(path)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    xs = sorted(epochs)

    def series(key):
        return [epochs[e].get(key, float("nan")) for e in xs]

    def present(key):
        return any(key in epochs[e] and math.isfinite(epochs[e][key]) for e in xs)

    many = len(xs) > 40
    style = dict(linewidth=1.8, marker=None if many else "o", markersize=3.5)
    colors = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c", "lr": "#7f7f7f"}
    names = {"train": "train", "val": "validation", "test": "test"}

    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(12.5, 4.9))
    def draw(ax, part, kind, best):
        """One curve; validation and test curves get their best epoch starred."""
        k = part + "_" + kind
        vals = series(k)
        label = names[part]
        ax.plot(xs, vals, color=colors[part],
                linestyle="-" if part == "train" else "--" if part == "val" else ":",
                **style)
        if part != "train":
            ok = [i for i in range(len(xs)) if math.isfinite(vals[i])]
            # The last of equal bests: what best.h5 would hold.
            i = best(ok, key=lambda j: (vals[j], j if best is max else -j))
            ax.plot([xs[i]], [vals[i]], marker="*", markersize=13, color=colors[part],
                    markeredgecolor="white", markeredgewidth=0.8, zorder=5)
            label += " (best %.4f, epoch %d)" % (vals[i], xs[i])
        ax.lines[-2 if part != "train" else -1].set_label(label)

    # Loss panel.
    drawn = 0
    for part in ("train", "val", "test"):
        if present(part + "_loss"):
            draw(ax_l, part, "loss", min)
            drawn += 1
    finite = [v for p in ("train", "val", "test") for v in series(p + "_loss")
              if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 30:
        ax_l.set_yscale("log")
    ax_l.set_title("loss")
    if not drawn:
        ax_l.text(0.5, 0.5, "no loss values", ha="center", va="center",
                  transform=ax_l.transAxes, color="0.5")

    # Accuracy panel (or the learning rate for regression).
    has_acc = any(present(p + "_accuracy") for p in ("train", "val", "test"))
    if has_acc:
        for part in ("train", "val", "test"):
            if present(part + "_accuracy"):
                draw(ax_r, part, "accuracy", max)
        ax_r.set_title("accuracy")
        accs = [v for p in ("train", "val", "test") for v in series(p + "_accuracy")
                if math.isfinite(v)]
        lo, hi = min(accs), max(accs)
        pad = max(0.01, 0.08 * (hi - lo))
        ax_r.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) + (0.002 if hi >= 1 else 0))
    elif present("lr"):
        ax_r.plot(xs, series("lr"), color=colors["lr"], label="learning rate", **style)
        ax_r.set_title("learning rate (no accuracies: regression)")
    else:
        ax_r.set_title("accuracy")
        ax_r.text(0.5, 0.5, "no accuracy values", ha="center", va="center",
                  transform=ax_r.transAxes, color="0.5")

    for ax in (ax_l, ax_r):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if len(xs) == 1:
            ax.set_xlim(xs[0] - 1, xs[0] + 1)
        for s in starts[1:]:
            ax.axvline(s["_after_epoch"] + 0.5 if s["_after_epoch"] else 0.5,
                       color="0.55", linestyle=(0, (2, 3)), linewidth=1)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            if starts[1:]:
                from matplotlib.lines import Line2D
                handles.append(Line2D([], [], color="0.55", linestyle=(0, (2, 3))))
                labels.append("resumed")
            ax.legend(handles, labels, frameon=False, fontsize=9)

    # Footer: the last epoch's figures and the median throughput.
    last = epochs[xs[-1]]
    foot = ["epoch %d" % xs[-1]]
    if "step" in last:
        foot.append("step %d" % last["step"])
    for k, label in (("train_loss", "train loss"), ("val_loss", "val loss"),
                     ("test_loss", "test loss"), ("train_accuracy", "train acc"),
                     ("val_accuracy", "val acc"), ("test_accuracy", "test acc")):
        if k in last and math.isfinite(last[k]):
            foot.append("%s %.4f" % (label, last[k]))
    sps = sorted(epochs[e]["samples_per_second"] for e in xs
                 if "samples_per_second" in epochs[e]
                 and math.isfinite(epochs[e]["samples_per_second"]))
    if sps:
        foot.append("median %s samples/s" % format(int(round(sps[len(sps) // 2])), ","))
    secs = [epochs[e]["epoch_seconds"] for e in xs if "epoch_seconds" in epochs[e]
            and math.isfinite(epochs[e]["epoch_seconds"])]
    if secs:
        foot.append("%.1f s in epochs" % sum(secs))
    fig.text(0.5, 0.015, "final: " + " · ".join(foot), ha="center", fontsize=8.5, color="0.3")

    fig.suptitle(_title(path, starts, epochs, title), fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise MetricsError("%s: the directory does not exist" % out_dir)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return len(xs), len(starts)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="plot_metrics.py",
        description="Plot a dmlp run's metrics.jsonl: loss and accuracy per epoch.",
        epilog="example: plot_metrics.py runs/fashion_mnist/metrics.jsonl -o fm.png")
    ap.add_argument("metrics", metavar="METRICS.jsonl")
    ap.add_argument("-o", "--output", metavar="OUT.png",
                    help="default: METRICS with .png in place of .jsonl")
    ap.add_argument("--title", help="replace the title taken from the start line")
    ap.add_argument("--dpi", type=int, default=120)
    args = ap.parse_args(argv)
    out = args.output
    if not out:
        base = args.metrics[:-6] if args.metrics.endswith(".jsonl") else args.metrics
        out = base + ".png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.stderr.write("plot_metrics.py: needs matplotlib (Debian: apt-get install "
                         "python3-matplotlib)\n")
        return 2
    try:
        n, s = plot(args.metrics, out, args.title, args.dpi)
    except MetricsError as exc:
        sys.stderr.write("plot_metrics.py: %s\n" % exc)
        return 2
    print("%s: %d epoch%s, %d start line%s -> %s" % (args.metrics, n, "" if n == 1 else "s",
                                                    s, "" if s == 1 else "s", out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
