"""Oracle for retrain/train: scikit-learn's LogisticRegression, roc_auc_score
and log_loss, and scipy's skewness.

argv[1] is a JSON file {"l2": float, "names": [...], "csv": path}. The CSV
has one column per feature (raw values), "y" (0/1), "split" ("train" or
"holdout") and "go_score" (the Go model's probability). It prints JSON:
the transforms the documented rule picks (scipy skew, bias=True), the
standardization, the fitted coefficients in standardized space, predictions
for every row, and AUC and log loss of the Go scores on each split.
"""
import json
import sys

import numpy as np
import pandas as pd
from scipy.stats import skew
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score


def main(path):
    with open(path) as f:
        spec = json.load(f)
    df = pd.read_csv(spec["csv"])
    names = spec["names"]
    train = (df["split"] == "train").to_numpy()
    X = df[names].to_numpy(dtype=float)
    y = df["y"].to_numpy(dtype=int)

    transforms, mean, std = [], [], []
    T = np.empty_like(X)
    for j in range(X.shape[1]):
        col = X[train, j]
        heavy = col.min() >= 0 and col.std() > 0 and skew(col, bias=True) > 1
        transforms.append("log1p" if heavy else "")
        t = np.log1p(np.maximum(X[:, j], 0)) if heavy else X[:, j]
        m = t[train].mean()
        s = t[train].std(ddof=0)
        if s == 0:
            s = 1.0
        mean.append(float(m))
        std.append(float(s))
        T[:, j] = (t - m) / s

    n_train = int(train.sum())
    clf = LogisticRegression(C=1.0 / (n_train * spec["l2"]), solver="newton-cholesky", tol=1e-12, max_iter=1000)
    clf.fit(T[train], y[train])
    pred = clf.predict_proba(T)[:, 1]

    go = df["go_score"].to_numpy(dtype=float)
    out = {
        "transforms": transforms,
        "mean": mean,
        "std": std,
        "coef": clf.coef_[0].tolist(),
        "intercept": float(clf.intercept_[0]),
        "pred": pred.tolist(),
        "distinct_go_scores": int(len(np.unique(go))),
    }
    for part, mask in (("train", train), ("holdout", ~train)):
        out["auc_" + part] = float(roc_auc_score(y[mask], go[mask]))
        out["log_loss_" + part] = float(log_loss(y[mask], go[mask], labels=[0, 1]))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
