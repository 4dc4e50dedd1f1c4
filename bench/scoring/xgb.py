"""XGBoost's side of `make bench-scoring` (bench/scoring/main.go runs it).

    xgb.py train DIR   train the benchmark model and write, in DIR:
                       model.json   Booster.save_model, what Weir loads
                       model.bin    the same trees in XGBoost's old binary
                                    format (0.90 layout), what leaves loads:
                                    XGBoost 3.x no longer writes it
                       rows.f64     the benchmark rows, float64 little-endian,
                                    row-major (values are float32-exact)
                       pred.f32     XGBoost's predictions of the rows
                       meta.json    shapes and versions
    xgb.py time DIR    time XGBoost on the rows and print one JSON line of
                       ns per prediction: single-row inplace_predict,
                       its C call (XGBoosterPredictFromDense) alone, and
                       DMatrix+predict per call, a batch of all rows, and
                       the Python loop's own cost; CPU (process time)
                       and wall

One thread (nthread=1) for XGBoost, as Weir's evaluator runs on one
goroutine.
"""

import ctypes
import json
import os
import struct
import sys
import time

import numpy as np
import xgboost as xgb
from xgboost._data_utils import array_interface  # xgboost 3.2's own, as inplace_predict uses
from xgboost.core import _LIB, _check_call, c_bst_ulong, make_jcargs

N_FEATURES, N_TREES, DEPTH = 30, 100, 6
TRAIN_ROWS, BENCH_ROWS = 20000, 10000
SEED = 6


def make_rows(rng, n):
    X = rng.normal(size=(n, N_FEATURES)) * rng.uniform(0.5, 4, size=N_FEATURES)
    X[rng.random((n, N_FEATURES)) < 0.05] = np.nan
    return X.astype(np.float32).astype(np.float64)


def legacy_binary(mj, base_margin):
    """XGBoost 0.90's binary model (learner.cc Save, gbtree_model.h,
    tree_model.h), the format leaves reads, from the JSON model's trees."""
    lr = mj["learner"]
    gb = lr["gradient_booster"]["model"]
    trees = gb["trees"]
    nf = int(lr["learner_model_param"]["num_feature"])
    out = bytearray()
    # LearnerModelParam: base_score (a margin in this format), num_feature,
    # num_class, contain_extra_attrs, contain_eval_metrics, reserved[29].
    out += struct.pack("<fIiii", base_margin, nf, 0, 0, 0) + bytes(29 * 4)

    def string(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    out += string(lr["objective"]["name"]) + string("gbtree")
    # GBTreeModelParam: num_trees, num_roots, num_feature, pad,
    # num_pbuffer_deprecated, num_output_group, size_leaf_vector, reserved[32].
    out += struct.pack("<iiiiqii", len(trees), 1, nf, 0, 0, 1, 0) + bytes(32 * 4)
    for t in trees:
        n = int(t["tree_param"]["num_nodes"])
        # TreeParam: num_roots, num_nodes, num_deleted, max_depth,
        # num_feature, size_leaf_vector, reserved[31].
        out += struct.pack("<iiiiii", 1, n, 0, 0, nf, 0) + bytes(31 * 4)
        for i in range(n):
            parent = t["parents"][i]
            parent = -1 if parent == 2147483647 else parent
            sindex = t["split_indices"][i] | ((1 << 31) if t["default_left"][i] else 0)
            out += struct.pack("<iiiIf", parent, t["left_children"][i], t["right_children"][i], sindex,
                               t["split_conditions"][i])
        for i in range(n):
            out += struct.pack("<fffi", t["loss_changes"][i], t["sum_hessian"][i], t["base_weights"][i], 0)
    out += struct.pack(f"<{len(trees)}i", *gb["tree_info"])
    return bytes(out)


def train(d):
    rng = np.random.default_rng(SEED)
    X = make_rows(rng, TRAIN_ROWS)
    Z = np.nan_to_num(X)
    w = rng.normal(size=N_FEATURES)
    lin = Z @ w / 4 + np.sin(Z[:, 0] * 2) + Z[:, 1] * Z[:, 2] / 4 + (Z[:, 3] > 1) * 1.5
    y = (lin + rng.normal(size=TRAIN_ROWS) > 0).astype(np.float64)
    params = dict(objective="binary:logistic", max_depth=DEPTH, eta=0.1, tree_method="hist", nthread=1,
                  seed=SEED, min_child_weight=0.5)
    b = xgb.train(params, xgb.DMatrix(X, y), N_TREES)
    b.save_model(os.path.join(d, "model.json"))
    with open(os.path.join(d, "model.json")) as f:
        mj = json.load(f)
    base = np.float32(json.loads(mj["learner"]["learner_model_param"]["base_score"])[0])
    margin = -np.log(np.float32(1) / base - np.float32(1))  # ProbToMargin, float32
    with open(os.path.join(d, "model.bin"), "wb") as f:
        f.write(legacy_binary(mj, float(margin)))
    R = make_rows(np.random.default_rng(SEED + 1), BENCH_ROWS)
    R.astype("<f8").tofile(os.path.join(d, "rows.f64"))
    b.set_param({"nthread": 1})
    b.inplace_predict(R).astype("<f4").tofile(os.path.join(d, "pred.f32"))
    nodes = sum(int(t["tree_param"]["num_nodes"]) for t in mj["learner"]["gradient_booster"]["model"]["trees"])
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(dict(features=N_FEATURES, trees=N_TREES, depth=DEPTH, nodes=nodes, rows=BENCH_ROWS,
                       xgboost=xgb.__version__, numpy=np.__version__), f)


def clock(fn, n_preds, min_s=1.0):
    """CPU and wall ns per prediction of fn(), n_preds predictions a call,
    repeated for at least min_s. CPU is the process's (time.process_time),
    all threads, which other processes do not inflate."""
    fn()
    reps, c0, t0 = 0, time.process_time_ns(), time.perf_counter_ns()
    while time.perf_counter_ns() - t0 < min_s * 1e9:
        fn()
        reps += 1
    wall, cpu = time.perf_counter_ns() - t0, time.process_time_ns() - c0
    return cpu / (reps * n_preds), wall / (reps * n_preds)


def capi_predict(b):
    """fn(array_interface) calling XGBoosterPredictFromDense as
    Booster.inplace_predict does (xgboost 3.2's core.py), minus the Python
    around it."""
    cfg = make_jcargs(type=0, training=False, iteration_begin=0, iteration_end=0, missing=float("nan"),
                      strict_shape=False, cache_id=0)
    shape, dims, preds = ctypes.POINTER(c_bst_ulong)(), c_bst_ulong(), ctypes.POINTER(ctypes.c_float)()
    proxy = ctypes.c_void_p()

    def predict(iface):
        _check_call(_LIB.XGBoosterPredictFromDense(b.handle, iface, cfg, proxy, ctypes.byref(shape),
                                                   ctypes.byref(dims), ctypes.byref(preds)))
        return preds[0]
    return predict


def timing(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    R = np.fromfile(os.path.join(d, "rows.f64"), dtype="<f8").reshape(meta["rows"], meta["features"])
    b = xgb.Booster(model_file=os.path.join(d, "model.json"))
    b.set_param({"nthread": 1})
    want = np.fromfile(os.path.join(d, "pred.f32"), dtype="<f4")
    if not np.array_equal(b.inplace_predict(R), want):
        sys.exit("XGBoost's predictions changed")
    capi = capi_predict(b)
    for i in range(100):
        got = np.float32(capi(array_interface(R[i:i + 1])))
        if got != want[i]:
            sys.exit(f"row {i}: the C call predicts {got}, XGBoost {want[i]}")
    single = [R[i:i + 1] for i in range(1000)]

    def loop(f, rows):
        def run():
            for r in rows:
                f(r)
        return run

    cases = {
        # The loop over pre-sliced rows with a trivial call: what a Python
        # caller pays whatever the model.
        "python_loop": (loop(lambda r: r.shape, single), len(single)),
        "single_inplace": (loop(b.inplace_predict, single), len(single)),
        # The C call inplace_predict makes, XGBoosterPredictFromDense, with
        # its arguments (array interface, config) prepared beforehand: the
        # C library's own cost per single-row call, plus ctypes.
        "single_capi": (loop(capi_predict(b), [array_interface(r) for r in single]), len(single)),
        "single_dmatrix": (loop(lambda r: b.predict(xgb.DMatrix(r, nthread=1)), single[:200]), 200),
        "batch_inplace": (lambda: b.inplace_predict(R), len(R)),
        # A fresh DMatrix each call: XGBoost caches the predictions of a
        # DMatrix it has seen, so predicting the same one again is free.
        "batch_dmatrix": (lambda: b.predict(xgb.DMatrix(R, nthread=1)), len(R)),
    }
    out = {}
    for name, (fn, n) in cases.items():
        out[name + "_cpu_ns"], out[name + "_wall_ns"] = clock(fn, n)
    print(json.dumps(out))


if __name__ == "__main__":
    {"train": train, "time": timing}[sys.argv[1]](sys.argv[2])
