"""Golden quantiles for processors/agg's Quantiles, from DataDog's reference
DDSketch (PyPI ddsketch, pinned in deploy/local/requirements.txt).

    $WEIR_PYTHON processors/agg/testdata/gen_quantiles.py > processors/agg/testdata/quantiles_golden.json

Each case is a data set (drawn here with a fixed seed), a relative accuracy
and the quantiles that ddsketch.DDSketch (logarithmic mapping, unbounded
dense stores, a zero count) returns for it. The Go test feeds the same values
to agg.Quantiles and wants the same answers to 1e-9 relative: the two index
the same bins (ddsketch's key is ceil(log_gamma x), sketches-go's index
floor(log_gamma x), one less, and both map a bin to the same value
2*gamma^key/(gamma+1)), so they can differ only where rounding puts a value
exactly on a bin boundary. Values are written as Python's repr, which
round-trips to the same float64 in Go.
"""
import json
import math
import random
import sys

import ddsketch
from ddsketch import DDSketch

QUANTILES = [0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1]


def normal(r, n):
    return [r.gauss(0, 1) for _ in range(n)]


def lognormal(r, n):
    return [r.lognormvariate(0, 2) for _ in range(n)]


def mixed(r, n):
    """Both signs over 20 decades, a tenth zeros."""
    out = []
    for _ in range(n):
        if r.random() < 0.1:
            out.append(0.0)
        else:
            x = 10 ** r.uniform(-10, 10)
            out.append(x if r.random() < 0.6 else -x)
    return out


def small_ints(r, n):
    """Many ties, each integer in its own bin."""
    return [float(r.randint(-5, 20)) for _ in range(n)]


def negative(r, n):
    return [-r.expovariate(0.01) for _ in range(n)]


CASES = [
    # name, generator, n, relative accuracy
    ("normal", normal, 2000, 0.01),
    ("lognormal", lognormal, 2000, 0.01),
    ("lognormal-2pct", lognormal, 1500, 0.02),
    ("mixed", mixed, 2000, 0.01),
    ("mixed-5pct", mixed, 1000, 0.05),
    ("small-ints", small_ints, 1000, 0.01),
    ("negative", negative, 1000, 0.005),
    ("one", lambda r, n: [3.5], 1, 0.01),
    ("two", lambda r, n: [-2.0, 7.25], 2, 0.01),
]


def main():
    cases = []
    for i, (name, gen, n, acc) in enumerate(CASES):
        values = gen(random.Random(1000 + i), n)
        sk = DDSketch(relative_accuracy=acc)
        for v in values:
            sk.add(v)
        want = [sk.get_quantile_value(q) for q in QUANTILES]
        assert all(w is not None and math.isfinite(w) for w in want)
        cases.append(
            {
                "name": name,
                "relative_accuracy": acc,
                "values": values,
                "quantiles": QUANTILES,
                "want": want,
            }
        )
    json.dump(
        {"generator": "gen_quantiles.py", "ddsketch": ddsketch.__version__, "cases": cases},
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
