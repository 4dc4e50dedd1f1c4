"""Oracle for monitors/metric AUC: scikit-learn's roc_auc_score.

Reads a JSON file of cases ({"cases": [{"name", "scores", "labels"}]}) named
by argv[1] and prints a JSON object of name -> AUC, or null where the metric
is undefined (one class only: scikit-learn raises or returns NaN).
"""
import json
import math
import sys
import warnings

from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score


def main(path):
    with open(path) as f:
        cases = json.load(f)["cases"]
    out = {}
    for c in cases:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                v = float(roc_auc_score(c["labels"], c["scores"]))
            out[c["name"]] = None if math.isnan(v) else v
        except ValueError:
            out[c["name"]] = None
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
