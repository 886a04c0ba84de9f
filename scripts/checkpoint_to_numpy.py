#!/usr/bin/env python3
"""dmlp checkpoints <-> numpy.

    checkpoint_to_numpy.py predict CHECKPOINT INPUT.h5 [--compare PREDICTIONS.h5] [--json]
        Runs the checkpoint's network on INPUT's /features in numpy (float64), after the
        checkpoint's /normalization when it has one. Prints the accuracy when INPUT has
        /labels (the mean squared error when it has /targets). With --compare, checks a
        `dmlp predict` output against it: /predictions within --atol (1e-4), /labels equal
        except where the two best classes are within --tie-tol of each other. Exit status
        1 on a mismatch, 2 on a bad file or argument.

    checkpoint_to_numpy.py export WEIGHTS.npz OUT.h5 [--activations A,B,..] [--loss L]
                                  [--vlen-strings] [--layout out_in|in_out]
        (also spelled `from-numpy`) Writes numpy arrays as a checkpoint's /layers (and
        /normalization), which `dmlp train --init-from`, `dmlp eval` and `dmlp predict`
        accept. WEIGHTS.npz holds, for layer i = 0, 1, ..: the weight as `weight_<i>`,
        `W<i>` or `layers/<i>/weight` ([out, in], the nn.Linear convention; --layout in_out
        for [in, out] as in Keras), the bias as `bias_<i>`, `b<i>` or `layers/<i>/bias`
        ([out]); the activations as `activation_<i>`, an `activations` array or
        --activations; and optionally `mean` and `std` (or `normalization/mean`, `/std`).

    checkpoint_to_numpy.py dump CHECKPOINT OUT.npz
        (also `to-numpy`) The reverse: a checkpoint's /layers and /normalization as an .npz
        in the layout `export` reads (`weight_<i>`, `bias_<i>`, `activation_<i>`, `mean`,
        `std`).

The checkpoint layout (README.md, "Files"): /layers/<i>/weight float32 [out, in],
/layers/<i>/bias float32 [out], attribute `activation` on /layers/<i> (a string: fixed or
variable length both load), /normalization/mean and /std float32 [in] when the inputs are
standardised as (x - mean) / std. Needs python3 with numpy and h5py (Debian:
python3-numpy python3-h5py).
"""

import argparse
import json
import os
import sys

try:
    import numpy as np
    import h5py
except ImportError as exc:  # pragma: no cover - depends on the machine
    sys.stderr.write(
        "checkpoint_to_numpy.py: needs numpy and h5py (%s); on Debian: "
        "apt-get install python3-numpy python3-h5py\n" % exc)
    sys.exit(2)

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "linear", "softmax")


class InputError(Exception):
    """A bad file or argument: exit status 2."""


# ---- reading -------------------------------------------------------------------------------

def _attr_str(obj, name):
    """A string attribute as str, whether stored fixed-length, variable-length or as bytes."""
    if name not in obj.attrs:
        return None
    v = obj.attrs[name]
    if isinstance(v, np.ndarray):
        if v.size != 1:
            return None
        v = v.reshape(-1)[0]
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode("utf-8", "replace")
    if not isinstance(v, str):
        return None
    return v.rstrip("\0")


def _open_h5(path, what):
    if not os.path.exists(path):
        raise InputError("%s: no such file" % path)
    if not os.path.isfile(path):
        raise InputError("%s: not a regular file" % path)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError("%s: cannot open as HDF5 (%s): not a %s?" % (path, exc, what))


def load_checkpoint(path):
    """Returns (layers, normalization, loss): layers a list of (W [out,in], b [out], act)
    in float64, normalization (mean, std) or None, loss the root `loss` attribute or None.
    Accepts what dmlp accepts: layers numbered 0..L-1, shapes chained, known activations."""
    with _open_h5(path, "dmlp checkpoint") as f:
        if "layers" not in f or not isinstance(f["layers"], h5py.Group):
            raise InputError("%s: /layers is missing (not a dmlp checkpoint?)" % path)
        lg = f["layers"]
        n = len(lg)
        if n == 0:
            raise InputError("%s: /layers is empty" % path)
        layers = []
        prev_out = None
        for i in range(n):
            key = str(i)
            if key not in lg:
                raise InputError("%s: /layers/%d is missing (layers must be numbered 0..%d)"
                                 % (path, i, n - 1))
            g = lg[key]
            if "weight" not in g or "bias" not in g:
                raise InputError("%s: /layers/%d needs weight and bias" % (path, i))
            W = np.asarray(g["weight"][()], dtype=np.float64)
            b = np.asarray(g["bias"][()], dtype=np.float64)
            if W.ndim != 2 or W.size == 0:
                raise InputError("%s: /layers/%d/weight must be a non-empty 2-D [out, in] "
                                 "array, not shape %s" % (path, i, list(W.shape)))
            if b.shape != (W.shape[0],):
                raise InputError("%s: /layers/%d/bias has shape %s, expected [%d]"
                                 % (path, i, list(b.shape), W.shape[0]))
            if prev_out is not None and W.shape[1] != prev_out:
                raise InputError("%s: /layers/%d/weight has %d inputs but layer %d has %d "
                                 "outputs" % (path, i, W.shape[1], i - 1, prev_out))
            act = _attr_str(g, "activation")
            if act not in ACTIVATIONS:
                raise InputError("%s: /layers/%d: missing or unknown activation attribute (%r)"
                                 % (path, i, act))
            layers.append((W, b, act))
            prev_out = W.shape[0]
        norm = None
        if "normalization" in f:
            d = layers[0][0].shape[1]
            mean = np.asarray(f["normalization/mean"][()], dtype=np.float64)
            std = np.asarray(f["normalization/std"][()], dtype=np.float64)
            if mean.shape != (d,) or std.shape != (d,):
                raise InputError("%s: /normalization/mean and /std must have shape [%d]"
                                 % (path, d))
            norm = (mean, std)
        loss = _attr_str(f, "loss")
    return layers, norm, loss


def load_dataset(path):
    """Returns (features float64 [N, D], labels int [N] or None, targets [N, K] or None)."""
    with _open_h5(path, "dmlp dataset") as f:
        if "features" not in f:
            raise InputError("%s: /features is missing (not a dmlp dataset?)" % path)
        x = np.asarray(f["features"][()], dtype=np.float64)
        if x.ndim != 2:
            raise InputError("%s: /features must be 2-D [N, D], not shape %s"
                             % (path, list(x.shape)))
        labels = np.asarray(f["labels"][()]).astype(np.int64) if "labels" in f else None
        targets = np.asarray(f["targets"][()], dtype=np.float64) if "targets" in f else None
    return x, labels, targets


# ---- the forward pass ----------------------------------------------------------------------

def activate(z, act):
    if act == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if act == "tanh":
        return np.tanh(z)
    if act == "relu":
        return np.maximum(z, 0.0)
    if act == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if act == "linear":
        return z
    if act == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(act)


def forward(layers, norm, x):
    """The network's outputs [N, K] (float64) for raw features x [N, D]."""
    a = np.asarray(x, dtype=np.float64)
    if norm is not None:
        a = (a - norm[0]) / norm[1]
    for W, b, act in layers:
        a = activate(a @ W.T + b, act)
    return a


def is_classifier(layers, loss):
    if loss is not None:
        return loss == "cross_entropy"
    return layers[-1][2] == "softmax"


# ---- predict -------------------------------------------------------------------------------

def cmd_predict(args):
    layers, norm, loss = load_checkpoint(args.checkpoint)
    x, labels, targets = load_dataset(args.input)
    d = layers[0][0].shape[1]
    if x.shape[1] != d:
        raise InputError("%s: /features has %d columns but the network takes %d inputs"
                         % (args.input, x.shape[1], d))
    y = forward(layers, norm, x)
    classifier = is_classifier(layers, loss)
    report = {"checkpoint": args.checkpoint, "data": args.input, "samples": int(x.shape[0]),
              "layers": ["%dx%d %s" % (W.shape[0], W.shape[1], a) for W, b, a in layers],
              "normalization": norm is not None}
    pred_labels = y.argmax(axis=1) if classifier else None
    if classifier and labels is not None:
        if labels.shape != (x.shape[0],):
            raise InputError("%s: /labels has shape %s, expected [%d]"
                             % (args.input, list(labels.shape), x.shape[0]))
        correct = int((pred_labels == labels).sum())
        report["correct"] = correct
        report["accuracy"] = correct / x.shape[0] if x.shape[0] else 0.0
        p = np.clip(y[np.arange(x.shape[0]), np.clip(labels, 0, y.shape[1] - 1)], 1e-300, None)
        report["loss"] = float(-np.log(p).mean()) if x.shape[0] else 0.0
    elif not classifier and targets is not None:
        if targets.shape != y.shape:
            raise InputError("%s: /targets has shape %s, the network gives %s"
                             % (args.input, list(targets.shape), list(y.shape)))
        report["mse"] = float(((y - targets) ** 2).mean()) if y.size else 0.0

    ok = True
    if args.compare:
        ok, cmp = compare(y, pred_labels, args.compare, args.atol, args.tie_tol)
        report["compare"] = cmp

    if args.json:
        print(json.dumps(report))
    else:
        print("%s: %d layers (%s)%s" % (args.checkpoint, len(layers), ", ".join(report["layers"]),
                                       ", standardised inputs" if norm is not None else ""))
        print("samples: %d" % report["samples"])
        if "accuracy" in report:
            print("accuracy: %.6f (%d/%d)  loss: %.6f" % (report["accuracy"], report["correct"],
                                                         report["samples"], report["loss"]))
        if "mse" in report:
            print("mse: %.6g" % report["mse"])
        if args.compare:
            c = report["compare"]
            print("compare %s: max |prediction difference| %.3g (tolerance %g), labels: %d "
                  "differ, %d of them near-ties -> %s"
                  % (args.compare, c["max_abs_diff"], args.atol, c["label_mismatches"],
                     c["near_ties"], "OK" if ok else "MISMATCH"))
            for line in c["problems"][:10]:
                print("  " + line)
    return 0 if ok else 1


def compare(y, pred_labels, path, atol, tie_tol):
    """Checks a `dmlp predict` output against numpy's y; returns (ok, summary)."""
    problems = []
    with _open_h5(path, "dmlp predictions file") as f:
        if "predictions" not in f:
            raise InputError("%s: /predictions is missing" % path)
        p = np.asarray(f["predictions"][()], dtype=np.float64)
        lab = np.asarray(f["labels"][()]).astype(np.int64) if "labels" in f else None
    summary = {"file": path, "max_abs_diff": float("nan"), "label_mismatches": 0,
               "near_ties": 0, "problems": problems}
    if p.shape != y.shape:
        problems.append("/predictions has shape %s, numpy gives %s" % (list(p.shape),
                                                                      list(y.shape)))
        return False, summary
    diff = np.abs(p - y)
    summary["max_abs_diff"] = float(diff.max()) if diff.size else 0.0
    if not np.all(np.isfinite(p)):
        problems.append("/predictions holds non-finite values")
    bad_rows = np.nonzero((diff > atol).any(axis=1))[0] if diff.size else []
    for r in bad_rows[:10]:
        k = int(diff[r].argmax())
        problems.append("row %d, column %d: dmlp %.7g, numpy %.7g" % (r, k, p[r, k], y[r, k]))
    if len(bad_rows):
        problems.append("%d rows differ by more than %g" % (len(bad_rows), atol))
    if pred_labels is not None:
        if lab is None:
            problems.append("/labels is missing (the network is a classifier)")
        elif lab.shape != pred_labels.shape:
            problems.append("/labels has shape %s, expected %s" % (list(lab.shape),
                                                                  list(pred_labels.shape)))
        else:
            mism = np.nonzero(lab != pred_labels)[0]
            summary["label_mismatches"] = int(len(mism))
            ties = 0
            for r in mism:
                # A near-tie: dmlp's label scores (by numpy) within tie_tol of the best.
                ok_label = 0 <= lab[r] < y.shape[1] and \
                    y[r, pred_labels[r]] - y[r, lab[r]] <= tie_tol
                if ok_label:
                    ties += 1
                elif len(problems) < 20:
                    problems.append("row %d: dmlp label %d, numpy label %d (scores %.7g vs %.7g)"
                                    % (r, lab[r], pred_labels[r],
                                       y[r, lab[r]] if 0 <= lab[r] < y.shape[1] else float("nan"),
                                       y[r, pred_labels[r]]))
            summary["near_ties"] = ties
            if len(mism) > ties:
                problems.append("%d labels differ (not near-ties)" % (len(mism) - ties))
    return not problems, summary


# ---- export (numpy -> checkpoint) ----------------------------------------------------------

def _npz_get(z, names):
    for n in names:
        if n in z.files:
            return z[n]
    return None


def _as_str(v):
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size == 1 else v
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode()
    return str(v)


def read_npz_network(path, activations_arg, layout):
    if not os.path.isfile(path):
        raise InputError("%s: no such file" % path)
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError("%s: cannot read as .npz (%s)" % (path, exc))
    if not hasattr(z, "files"):
        raise InputError("%s: a .npy holds one array; need an .npz (np.savez) with weight_0, "
                         "bias_0, ..." % path)
    layers = []
    i = 0
    while True:
        W = _npz_get(z, ("weight_%d" % i, "W%d" % i, "layers/%d/weight" % i))
        if W is None:
            break
        b = _npz_get(z, ("bias_%d" % i, "b%d" % i, "layers/%d/bias" % i))
        if b is None:
            raise InputError("%s: layer %d has a weight but no bias (bias_%d)" % (path, i, i))
        a = _npz_get(z, ("activation_%d" % i, "layers/%d/activation" % i))
        layers.append([np.asarray(W), np.asarray(b), None if a is None else _as_str(a)])
        i += 1
    if not layers:
        raise InputError("%s: no layers found (expected arrays weight_0, bias_0, ...; found: %s)"
                         % (path, ", ".join(z.files) or "none"))
    acts = None
    if activations_arg:
        acts = [a.strip() for a in activations_arg.split(",")]
    elif "activations" in z.files:
        acts = [_as_str(a) for a in np.asarray(z["activations"]).reshape(-1)]
    if acts is not None:
        if len(acts) != len(layers):
            raise InputError("%d activations given for %d layers" % (len(acts), len(layers)))
        for L, a in zip(layers, acts):
            L[2] = a
    for i, (W, b, a) in enumerate(layers):
        if a is None:
            raise InputError("layer %d has no activation: give --activations or store "
                             "activation_%d in the .npz" % (i, i))
        if a not in ACTIVATIONS:
            raise InputError("layer %d: unknown activation '%s' (one of %s)"
                             % (i, a, ", ".join(ACTIVATIONS)))
        if a == "softmax" and i != len(layers) - 1:
            raise InputError("layer %d: softmax is allowed on the output layer only" % i)
    for L in layers:
        if L[0].ndim != 2:
            raise InputError("weights must be 2-D, got shape %s" % list(L[0].shape))
        if layout == "in_out":
            L[0] = L[0].T
    prev = None
    for i, (W, b, a) in enumerate(layers):
        if W.size == 0:
            raise InputError("layer %d: empty weight" % i)
        if b.shape != (W.shape[0],):
            raise InputError("layer %d: bias has shape %s, expected [%d] (weight is [out=%d, "
                             "in=%d]%s)" % (i, list(b.shape), W.shape[0], W.shape[0], W.shape[1],
                                            "" if layout == "in_out" else
                                            "; --layout in_out for [in, out] weights"))
        if prev is not None and W.shape[1] != prev:
            raise InputError("layer %d: weight has %d inputs but layer %d has %d outputs"
                             % (i, W.shape[1], i - 1, prev))
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise InputError("layer %d: non-finite weights" % i)
        prev = W.shape[0]
    mean = _npz_get(z, ("mean", "normalization/mean"))
    std = _npz_get(z, ("std", "normalization/std"))
    norm = None
    if (mean is None) != (std is None):
        raise InputError("%s: give both mean and std, or neither" % path)
    if mean is not None:
        d = layers[0][0].shape[1]
        mean, std = np.asarray(mean).reshape(-1), np.asarray(std).reshape(-1)
        if mean.shape != (d,) or std.shape != (d,):
            raise InputError("mean and std must have %d entries (the input width)" % d)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise InputError("std must be finite and > 0, mean finite")
        norm = (mean, std)
    return [tuple(L) for L in layers], norm


def write_checkpoint_layers(path, layers, norm=None, loss=None, vlen_strings=False):
    """Writes /layers (and /normalization) in dmlp's checkpoint layout: float32 datasets
    with the Fletcher-32 checksum, as dmlp writes them; the activation attribute as a
    fixed-length ASCII string (as dmlp itself writes) or, with vlen_strings, as h5py writes
    a str by default: variable-length UTF-8 (which dmlp builds before the cset fix in
    checkpoint.c's attr_read_str cannot read)."""
    def string_attr(obj, name, value):
        if vlen_strings:
            obj.attrs[name] = value
        else:
            obj.attrs.create(name, np.bytes_(value.encode("ascii")))

    def dataset(g, name, data):
        data = np.ascontiguousarray(data, dtype=np.float32)
        g.create_dataset(name, data=data, chunks=data.shape, fletcher32=True)

    tmp = path + ".tmp-%d" % os.getpid()
    try:
        with h5py.File(tmp, "w") as f:
            lg = f.create_group("layers")
            for i, (W, b, act) in enumerate(layers):
                g = lg.create_group(str(i))
                dataset(g, "weight", W)
                dataset(g, "bias", b)
                string_attr(g, "activation", act)
            if norm is not None:
                ng = f.create_group("normalization")
                dataset(ng, "mean", norm[0])
                dataset(ng, "std", norm[1])
            if loss:
                string_attr(f, "loss", loss)
            string_attr(f, "exported_by", "checkpoint_to_numpy.py")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cmd_export(args):
    layers, norm = read_npz_network(args.weights, args.activations, args.layout)
    if args.loss and args.loss not in ("cross_entropy", "mse"):
        raise InputError("--loss must be cross_entropy or mse")
    if args.loss == "cross_entropy" and layers[-1][2] != "softmax":
        raise InputError("--loss cross_entropy needs a softmax output layer")
    write_checkpoint_layers(args.output, layers, norm, args.loss, args.vlen_strings)
    print("%s: %d layers (%s)%s" % (args.output, len(layers),
                                    ", ".join("%dx%d %s" % (W.shape[0], W.shape[1], a)
                                              for W, b, a in layers),
                                    ", with normalization" if norm is not None else ""))
    return 0


def cmd_dump(args):
    layers, norm, loss = load_checkpoint(args.checkpoint)
    arrays = {}
    for i, (W, b, a) in enumerate(layers):
        arrays["weight_%d" % i] = W.astype(np.float32)
        arrays["bias_%d" % i] = b.astype(np.float32)
        arrays["activation_%d" % i] = np.array(a)
    if norm is not None:
        arrays["mean"] = norm[0].astype(np.float32)
        arrays["std"] = norm[1].astype(np.float32)
    np.savez(args.output, **arrays)
    print("%s: %d layers%s" % (args.output, len(layers),
                               ", with mean and std" if norm is not None else ""))
    return 0


# ---- command line --------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="checkpoint_to_numpy.py",
        description="dmlp checkpoints <-> numpy: a numpy forward pass that checks `dmlp "
                    "predict`, and weights from numpy written as a checkpoint.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  checkpoint_to_numpy.py predict runs/x/latest.h5 test.h5 --compare pred.h5\n"
               "  checkpoint_to_numpy.py export weights.npz init.h5 --activations relu,softmax\n"
               "  checkpoint_to_numpy.py dump runs/x/latest.h5 weights.npz")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("predict", help="numpy forward pass of a checkpoint on a dataset")
    p.add_argument("checkpoint")
    p.add_argument("input", help="HDF5 file with /features (and /labels or /targets)")
    p.add_argument("--compare", metavar="PREDICTIONS.h5",
                   help="a `dmlp predict` output to check against numpy")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest allowed |dmlp - numpy| per prediction (default 1e-4)")
    p.add_argument("--tie-tol", type=float, default=1e-5,
                   help="label differences are allowed where numpy's two scores are this "
                        "close (default 1e-5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_predict)

    for name, aliases in (("export", ["from-numpy"]),):
        p = sub.add_parser(name, aliases=aliases,
                           help="write numpy weights (.npz) as a checkpoint's /layers")
        p.add_argument("weights", metavar="WEIGHTS.npz")
        p.add_argument("output", metavar="OUT.h5")
        p.add_argument("--activations", metavar="A,B,..",
                       help="one per layer, e.g. relu,relu,softmax (else from the .npz)")
        p.add_argument("--layout", choices=("out_in", "in_out"), default="out_in",
                       help="the weights' layout in the .npz (default out_in, as dmlp)")
        p.add_argument("--loss", choices=("cross_entropy", "mse"),
                       help="store the root `loss` attribute (else dmlp infers it: softmax "
                            "output -> cross_entropy, otherwise mse)")
        p.add_argument("--vlen-strings", action="store_true",
                       help="variable-length UTF-8 string attributes, h5py's default for "
                            "str (default: fixed-length ASCII, as dmlp writes)")
        p.set_defaults(func=cmd_export)

    p = sub.add_parser("dump", aliases=["to-numpy"],
                       help="a checkpoint's /layers and /normalization as an .npz")
    p.add_argument("checkpoint")
    p.add_argument("output", metavar="OUT.npz")
    p.set_defaults(func=cmd_dump)

    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        sys.stderr.write("checkpoint_to_numpy.py: %s\n" % exc)
        return 2
    except (OSError, KeyError, ValueError) as exc:
        sys.stderr.write("checkpoint_to_numpy.py: %s\n" % exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
