#!/usr/bin/env python3
"""scikit-learn's MLPRegressor on the surrogate example (bench/surrogate.sh), the same
network and schedule as configs/surrogate.yaml as far as scikit-learn goes: two tanh
layers of 64, Adam at 0.003, batch 64, 60 epochs, inputs standardised. It has no robust
loss and no target scaling of its own, so it runs on the raw targets and inside
TransformedTargetRegressor(StandardScaler), the usual user-side fix.

usage: surrogate_sklearn.py DIR   (DIR holds surrogate_train.csv and surrogate_test.csv)
prints one JSON object per variant: name, r2_per_target, mae_per_target, seconds
"""
import json
import sys
import time
import warnings

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def load(path):
    a = np.loadtxt(path, delimiter=",", skiprows=1)
    return a[:, :4], a[:, 4:]


def main():
    d = sys.argv[1]
    xtr, ytr = load(d + "/surrogate_train.csv")
    xte, yte = load(d + "/surrogate_test.csv")
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, scale_targets in (("scikit-learn MLPRegressor, raw targets", False),
                                ("scikit-learn MLPRegressor, scaled targets", True)):
        mlp = MLPRegressor(hidden_layer_sizes=(64, 64), activation="tanh", solver="adam",
                           learning_rate_init=0.003, batch_size=64, max_iter=60, alpha=0.0,
                           shuffle=True, random_state=1, tol=0.0, n_iter_no_change=1000)
        model = make_pipeline(StandardScaler(), mlp)
        if scale_targets:
            model = TransformedTargetRegressor(regressor=model, transformer=StandardScaler())
        t0 = time.time()
        model.fit(xtr, ytr)
        seconds = time.time() - t0
        yp = model.predict(xte)
        print(json.dumps({
            "name": name,
            "r2_per_target": [r2_score(yte[:, k], yp[:, k]) for k in range(3)],
            "mae_per_target": [mean_absolute_error(yte[:, k], yp[:, k]) for k in range(3)],
            "seconds": seconds}))


if __name__ == "__main__":
    main()
