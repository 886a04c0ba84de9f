#!/usr/bin/env python3
"""Writes the data of configs/surrogate.yaml: a toy combustion surrogate.

Four inputs: the initial temperature T0 (800-1400 K), the pressure P (1-30 bar), the
equivalence ratio phi (0.6-1.4) and a dilution fraction (0-0.3). Three outputs of very
different scales, as simulations give them:
  T_ad    the adiabatic flame temperature, ~1300-3100 K;
  tau     an Arrhenius ignition delay in seconds, ~1e-5-1e-1 (three decades);
  Y_NO    a thermal-NO mass fraction, ~1e-8-1e-6.
Targets carry 1% multiplicative noise; in the training file 3% of the rows also have one
output replaced by a gross error (a failed run, a unit mix-up: x3 to x10, or 0), which a
squared loss chases and a robust one ignores. The test file is clean.

Only the standard library: CSV files that `dmlp import csv` turns into HDF5.

usage: surrogate_data.py OUTDIR [--train N] [--test N] [--seed S]
writes OUTDIR/surrogate_train.csv and OUTDIR/surrogate_test.csv
"""
import argparse
import math
import os
import random


def sample(rng):
    t0 = rng.uniform(800.0, 1400.0)
    p = rng.uniform(1.0, 30.0)
    phi = rng.uniform(0.6, 1.4)
    dil = rng.uniform(0.0, 0.3)
    # heat release peaks slightly rich and falls off on both sides; dilution absorbs it
    heat = 1900.0 * math.exp(-((phi - 1.05) / 0.45) ** 2) * (1.0 - 1.6 * dil)
    t_ad = t0 + heat
    tau = 2e-9 * math.exp(16000.0 / t0) * p ** -0.9 * phi ** -0.5 * (1.0 + 2.0 * dil)
    y_no = 3e-4 * math.exp(-22000.0 / t_ad) * math.sqrt(p / 10.0) * (1.0 - dil)
    return (t0, p, phi, dil), [t_ad, tau, y_no]


def write(path, n, rng, outlier_rate):
    with open(path, "w") as f:
        f.write("T0,P,phi,dilution,T_ad,tau,Y_NO\n")
        for _ in range(n):
            x, y = sample(rng)
            y = [v * (1.0 + 0.01 * rng.gauss(0.0, 1.0)) for v in y]
            if rng.random() < outlier_rate:
                k = rng.randrange(3)
                y[k] = 0.0 if rng.random() < 0.2 else y[k] * rng.uniform(3.0, 10.0)
            f.write(",".join("%.9g" % v for v in list(x) + y) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--test", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    rng = random.Random(a.seed)
    write(os.path.join(a.outdir, "surrogate_train.csv"), a.train, rng, 0.03)
    write(os.path.join(a.outdir, "surrogate_test.csv"), a.test, rng, 0.0)


if __name__ == "__main__":
    main()
