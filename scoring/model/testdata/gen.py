"""Golden vectors for scoring/model's XGBoost and LightGBM evaluators.

Trains small models with PyPI xgboost and lightgbm (versions pinned in
deploy/local/requirements.txt) on generated data, saves each model as the
library writes it, and writes, per model, input rows and the library's own
predictions. The Go tests (golden_test.go: TestXGBoostGolden,
TestLightGBMGolden) read these files and nothing regenerates them at test
time. The script is deterministic (fixed seeds, one thread): rerun it after
changing it or the pinned versions, and commit the output:

    . .weir/env && $WEIR_PYTHON scoring/model/testdata/gen.py

Outputs, under scoring/model/testdata/:

    xgboost/CASE.json          the model, Booster.save_model("CASE.json")
    xgboost/CASE.golden.json   {"rows": [[x...]], "margin": [[...]], "pred": [[...]]}
    lightgbm/CASE.txt          the model, Booster.save_model("CASE.txt")
    lightgbm/CASE.golden.json  the same shape (margin = raw_score=True)

Row values are numbers, or the strings "NaN", "Inf", "-Inf". Predictions are
the libraries' float32 (XGBoost) or float64 (LightGBM) outputs written as the
shortest decimal that reads back to the same float64. Every row is predicted
with inplace_predict (XGBoost) and, where it holds no infinity, also through a
DMatrix; the two must agree to 1e-6 (exactly, but for dart) or the script
stops.
"""

import json
import math
import os
import sys

import numpy as np
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261205


def enc(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return v


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def data(rng, n, nf, nan_frac=0.1):
    X = rng.normal(size=(n, nf)) * rng.uniform(0.5, 3, size=nf)
    X[rng.random((n, nf)) < nan_frac] = np.nan
    return X


def edge_rows(booster_json, nf, rng, cat_features=()):
    """Rows that sit on the model's thresholds: each threshold itself, its
    float64 neighbours (which round to it in float32), and the float32
    neighbours, so that < versus <= and the float32 rounding of inputs
    both show."""
    rows = []
    gb = booster_json["learner"]["gradient_booster"]
    if gb["name"] == "dart":
        gb = gb["gbtree"]
    for t in gb["model"]["trees"][:6]:
        for i, left in enumerate(t["left_children"]):
            if left == -1 or t["split_type"][i] != 0:
                continue
            f, c = t["split_indices"][i], t["split_conditions"][i]
            c32 = np.float32(c)
            for v in (float(c32), np.nextafter(float(c32), -np.inf), np.nextafter(float(c32), np.inf),
                      float(np.nextafter(c32, np.float32(-np.inf))), float(np.nextafter(c32, np.float32(np.inf))),
                      # halfway between two float32s: ties round to even
                      (float(c32) + float(np.nextafter(c32, np.float32(-np.inf)))) / 2,
                      (float(c32) + float(np.nextafter(c32, np.float32(np.inf)))) / 2):
                r = rng.normal(size=nf)
                for cf in cat_features:
                    r[cf] = rng.integers(0, 4)
                r[f] = v
                rows.append(r)
    return rows


def xgb_case(name, params, X, y, rounds, feature_types=None, feature_names=None, extra_rows=(), base_margin=None):
    dtrain = xgb.DMatrix(X, y, feature_types=feature_types, feature_names=feature_names,
                         enable_categorical=feature_types is not None and "c" in feature_types)
    params = dict(params, seed=SEED, nthread=1)
    b = xgb.train(params, dtrain, rounds)
    path = os.path.join(HERE, "xgboost", name + ".json")
    b.save_model(path)
    with open(path) as f:
        mj = json.load(f)
    rng = np.random.default_rng(SEED + 1)
    nf = X.shape[1]
    cats = [i for i, t in enumerate(feature_types or []) if t == "c"]
    rows = [X[i] for i in range(min(len(X), 60))]
    rows += edge_rows(mj, nf, rng, cats)
    rows += [np.full(nf, np.nan), np.zeros(nf)]
    rows += [np.asarray(r, dtype=np.float64) for r in extra_rows]
    R = np.array(rows, dtype=np.float64)
    margin = b.inplace_predict(R, predict_type="margin", missing=np.nan)
    pred = b.inplace_predict(R, predict_type="value", missing=np.nan)
    with np.errstate(over="ignore"):
        finite = ~np.isinf(R.astype(np.float32)).any(axis=1)
    if finite.any():
        d = xgb.DMatrix(R[finite], feature_types=feature_types, feature_names=feature_names,
                        enable_categorical=dtrain.feature_types is not None and "c" in (feature_types or []))
        for got, want in ((b.predict(d, output_margin=True), margin[finite]), (b.predict(d), pred[finite])):
            # Equal for gbtree; dart's two paths round the tree weights
            # differently (1 float32 ulp).
            if not np.allclose(got, want, rtol=0, atol=1e-6):
                sys.exit(f"{name}: DMatrix and inplace predictions differ")
    margin = margin.reshape(len(R), -1)
    pred = pred.reshape(len(R), -1)
    write_json(os.path.join(HERE, "xgboost", name + ".golden.json"), {
        "xgboost": xgb.__version__,
        "rows": [[enc(v) for v in r] for r in R],
        "margin": [[float(v) for v in r] for r in margin],
        "pred": [[float(v) for v in r] for r in pred],
    })
    print(f"xgboost/{name}: {len(b.get_dump())} trees, {len(R)} rows")


def xgboost_cases():
    os.makedirs(os.path.join(HERE, "xgboost"), exist_ok=True)
    rng = np.random.default_rng(SEED)
    n, nf = 400, 6
    X = data(rng, n, nf)
    lin = np.nan_to_num(X[:, 0]) - 0.7 * np.nan_to_num(X[:, 1]) + 0.3 * np.nan_to_num(X[:, 2]) ** 2
    ybin = (lin + rng.normal(size=n) > 0.4).astype(np.float64)
    yreg = lin * 3 + rng.normal(size=n) + 10
    ymc = np.digitize(lin + rng.normal(size=n) * 0.5, [-0.5, 0.5, 1.5])
    ycount = rng.poisson(np.exp(np.clip(lin, -3, 2)))
    ypos = np.exp(np.clip(lin, -3, 3)) + 0.01
    extra = [[np.inf] * nf, [-np.inf] * nf, [1e300] * nf, [-1e300] * nf, [3.4028235e38] * nf, [1e-45] * nf]
    d = dict(max_depth=4, eta=0.3)
    xgb_case("binary_logistic", dict(d, objective="binary:logistic"), X, ybin, 20, extra_rows=extra)
    xgb_case("binary_logistic_base_score", dict(d, objective="binary:logistic", base_score=0.2), X, ybin, 10, extra_rows=extra)
    xgb_case("binary_logistic_names", dict(d, objective="binary:logistic"), X, ybin, 5,
             feature_names=[f"card.f{i}" for i in range(nf)])
    xgb_case("binary_logitraw", dict(d, objective="binary:logitraw"), X, ybin, 10)
    xgb_case("reg_logistic", dict(d, objective="reg:logistic"), X, ybin, 10)
    xgb_case("reg_squarederror", dict(d, objective="reg:squarederror"), X, yreg, 20, extra_rows=extra)
    xgb_case("reg_squarederror_depth8", dict(objective="reg:squarederror", max_depth=8, eta=0.1, min_child_weight=0),
             X, yreg, 30)
    xgb_case("reg_absoluteerror", dict(d, objective="reg:absoluteerror"), X, yreg, 10)
    xgb_case("reg_pseudohubererror", dict(d, objective="reg:pseudohubererror"), X, yreg, 10)
    xgb_case("count_poisson", dict(d, objective="count:poisson"), X, ycount, 10)
    xgb_case("reg_gamma", dict(d, objective="reg:gamma"), X, ypos, 10)
    xgb_case("reg_tweedie", dict(d, objective="reg:tweedie"), X, ypos, 10)
    xgb_case("multi_softprob", dict(d, objective="multi:softprob", num_class=4), X, ymc, 15, extra_rows=extra)
    xgb_case("multi_softmax", dict(d, objective="multi:softmax", num_class=4), X, ymc, 8)
    xgb_case("multi_softprob_parallel", dict(d, objective="multi:softprob", num_class=3, num_parallel_tree=2,
                                             subsample=0.8, colsample_bynode=0.8), X, np.minimum(ymc, 2), 4)
    xgb_case("dart", dict(d, booster="dart", objective="binary:logistic", rate_drop=0.3, skip_drop=0.0), X, ybin, 10)
    xgb_case("one_tree_stump", dict(objective="reg:squarederror", max_depth=1), X, yreg, 1)

    # Categorical features: columns 0 and 1 hold categories 0..K-1 seen in
    # training (with gaps: 3 never appears), NaN included.
    n = 600
    Xc = data(rng, n, 5)
    Xc[:, 0] = rng.choice([0, 1, 2, 4, 5, 6, 7, 8, 9, 10], size=n)
    Xc[:, 1] = rng.integers(0, 40, size=n)
    Xc[rng.random(n) < 0.08, 0] = np.nan
    Xc[rng.random(n) < 0.08, 1] = np.nan
    c0 = np.nan_to_num(Xc[:, 0], nan=11)
    c1 = np.nan_to_num(Xc[:, 1], nan=41)
    effect0 = np.array([1.5, -1, 0.3, 0, 2, -2, 0.8, -0.4, 1.1, -1.3, 0.6, 2.5])[c0.astype(int)]
    effect1 = np.sin(c1 * 1.7) * 1.5
    lin = effect0 + effect1 + 0.5 * np.nan_to_num(Xc[:, 2])
    ft = ["c", "c", "q", "q", "q"]
    edge = []
    for c in (3, 11, 12, 39, 40, 41, 63, 64, 100, 1000, 2.0**24 - 1, 2.0**24, 2.0**31, 1e30,
              -1, -0.5, 2.5, 0.999, np.nan, np.inf, -np.inf):
        for other in (0, 5, np.nan):
            edge.append([c, other, 0.1, -0.2, 0.3])
            edge.append([other, c, 0.1, -0.2, 0.3])
    ybin = (lin + rng.normal(size=n) * 0.5 > 0.3).astype(np.float64)
    xgb_case("categorical_partition", dict(objective="binary:logistic", max_depth=4, max_cat_to_onehot=1,
                                           tree_method="hist"), Xc, ybin, 15, feature_types=ft, extra_rows=edge)
    xgb_case("categorical_onehot", dict(objective="binary:logistic", max_depth=4, max_cat_to_onehot=64,
                                        tree_method="hist"), Xc, ybin, 10, feature_types=ft, extra_rows=edge)
    ymc = np.digitize(lin + rng.normal(size=n) * 0.5, [-1, 0.5, 1.5])
    xgb_case("categorical_multi_softprob", dict(objective="multi:softprob", num_class=4, max_depth=3,
                                                max_cat_to_onehot=1, tree_method="hist"),
             Xc, ymc, 6, feature_types=ft, extra_rows=edge)
    xgb_case("categorical_reg", dict(objective="reg:squarederror", max_depth=5, max_cat_to_onehot=1,
                                     tree_method="hist"), Xc, lin * 2 + 3, 10, feature_types=ft, extra_rows=edge)


def lgb_edge_rows(model_text, nf, rng, cat_features=()):
    """Rows on LightGBM's thresholds: each, its float64 neighbours, and
    values within 1e-35 of zero, which its predictor reads as zero."""
    rows = []
    feats = thrs = types = None
    for line in model_text.splitlines():
        if line.startswith("split_feature="):
            feats = [int(v) for v in line.split("=")[1].split()]
        elif line.startswith("threshold="):
            thrs = [float(v) for v in line.split("=")[1].split()]
        elif line.startswith("decision_type="):
            types = [int(v) for v in line.split("=")[1].split()]
        elif line.startswith("Tree=6"):
            break
        if feats and thrs and types:
            for f, t, d in zip(feats, thrs, types):
                if d & 1:
                    continue
                for v in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
                    r = rng.normal(size=nf)
                    for cf in cat_features:
                        r[cf] = rng.integers(0, 4)
                    r[f] = v
                    rows.append(r)
            feats = thrs = types = None
    for v in (0.0, -0.0, 1e-40, -1e-40, 1e-35, -1e-35, 1.0000000180025095e-35, -1.0000000180025095e-35, 2e-35, np.nan,
              np.inf, -np.inf, 1e300):
        r = rng.normal(size=nf)
        for cf in cat_features:
            r[cf] = rng.integers(0, 4)
        r[:] = np.where(np.arange(nf) % 2 == 0, v, r)
        rows.append(r.copy())
        r[:] = v
        rows.append(r)
    return rows


def lgb_case(name, params, X, y, rounds, categorical=(), extra_rows=(), group=None):
    import lightgbm as lgb

    ds = lgb.Dataset(X, y, categorical_feature=list(categorical) or "auto", group=group, free_raw_data=False)
    params = dict(params, seed=SEED, num_threads=1, verbose=-1, deterministic=True)
    b = lgb.train(params, ds, rounds)
    path = os.path.join(HERE, "lightgbm", name + ".txt")
    b.save_model(path)
    with open(path) as f:
        text = f.read()
    rng = np.random.default_rng(SEED + 2)
    nf = X.shape[1]
    rows = [X[i] for i in range(min(len(X), 60))]
    rows += lgb_edge_rows(text, nf, rng, categorical)
    rows += [np.asarray(r, dtype=np.float64) for r in extra_rows]
    R = np.array(rows, dtype=np.float64)
    b2 = lgb.Booster(model_file=path)  # what Weir reads, not the in-memory booster
    margin = b2.predict(R, raw_score=True, num_threads=1).reshape(len(R), -1)
    pred = b2.predict(R, num_threads=1).reshape(len(R), -1)
    if not np.allclose(b.predict(R, num_threads=1).reshape(len(R), -1), pred, rtol=0, atol=1e-12):
        sys.exit(f"{name}: the saved model predicts differently")
    write_json(os.path.join(HERE, "lightgbm", name + ".golden.json"), {
        "lightgbm": lgb.__version__,
        "rows": [[enc(v) for v in r] for r in R],
        "margin": [[float(v) for v in r] for r in margin],
        "pred": [[float(v) for v in r] for r in pred],
    })
    print(f"lightgbm/{name}: {b2.num_trees()} trees, {len(R)} rows")


def lightgbm_cases():
    os.makedirs(os.path.join(HERE, "lightgbm"), exist_ok=True)
    rng = np.random.default_rng(SEED + 10)
    n, nf = 500, 6
    X = data(rng, n, nf)
    X[:, 5] = np.where(rng.random(n) < 0.5, 0.0, X[:, 5])  # many zeros: splits at 0
    X[:, 4] = rng.normal(size=n)  # no missing values: missing type None
    lin = np.nan_to_num(X[:, 0]) - 0.7 * np.nan_to_num(X[:, 1]) + 0.3 * np.nan_to_num(X[:, 2]) ** 2 + (X[:, 5] == 0)
    ybin = (lin + rng.normal(size=n) > 0.4).astype(np.float64)
    yreg = lin * 3 + rng.normal(size=n) + 10
    ymc = np.digitize(lin + rng.normal(size=n) * 0.5, [-0.5, 0.5, 1.5])
    ycount = rng.poisson(np.exp(np.clip(lin, -3, 2)))
    ypos = np.exp(np.clip(lin, -3, 3)) + 0.01
    d = dict(num_leaves=15, learning_rate=0.2, min_data_in_leaf=5)
    lgb_case("binary", dict(d, objective="binary"), X, ybin, 20)
    lgb_case("binary_sigmoid", dict(d, objective="binary", sigmoid=0.7), X, ybin, 10)
    lgb_case("binary_zero_as_missing", dict(d, objective="binary", zero_as_missing=True), X, ybin, 10)
    lgb_case("binary_no_missing", dict(d, objective="binary", use_missing=False), X, ybin, 10)
    lgb_case("cross_entropy", dict(d, objective="cross_entropy"), X, ybin, 10)
    lgb_case("regression", dict(d, objective="regression"), X, yreg, 20)
    lgb_case("regression_l1", dict(d, objective="regression_l1"), X, yreg, 10)
    lgb_case("huber", dict(d, objective="huber"), X, yreg, 10)
    lgb_case("quantile", dict(d, objective="quantile", alpha=0.8), X, yreg, 10)
    lgb_case("poisson", dict(d, objective="poisson"), X, ycount, 10)
    lgb_case("gamma", dict(d, objective="gamma"), X, ypos, 10)
    lgb_case("tweedie", dict(d, objective="tweedie"), X, ypos, 10)
    lgb_case("multiclass", dict(d, objective="multiclass", num_class=4), X, ymc, 10)
    lgb_case("multiclassova", dict(d, objective="multiclassova", num_class=4), X, ymc, 8)
    lgb_case("rf", dict(d, boosting="rf", objective="binary", bagging_freq=1, bagging_fraction=0.7), X, ybin, 10)
    lgb_case("dart", dict(d, boosting="dart", objective="binary", drop_rate=0.3), X, ybin, 10)
    lgb_case("deep", dict(objective="regression", num_leaves=200, min_data_in_leaf=1, learning_rate=0.1), X, yreg, 5)
    lgb_case("stump", dict(objective="regression", num_leaves=2), X, yreg, 1)

    # Categorical features 0 and 1, categories 0..K-1 with gaps and NaN.
    n = 800
    Xc = data(rng, n, 5)
    Xc[:, 0] = rng.choice([0, 1, 2, 4, 5, 6, 7, 8, 9, 10], size=n)
    Xc[:, 1] = rng.integers(0, 40, size=n)
    Xc[rng.random(n) < 0.08, 0] = np.nan
    Xc[rng.random(n) < 0.08, 1] = np.nan
    c0 = np.nan_to_num(Xc[:, 0], nan=11).astype(int)
    c1 = np.nan_to_num(Xc[:, 1], nan=41)
    lin = np.array([1.5, -1, 0.3, 0, 2, -2, 0.8, -0.4, 1.1, -1.3, 0.6, 2.5])[c0] + np.sin(c1 * 1.7) * 1.5 \
        + 0.5 * np.nan_to_num(Xc[:, 2])
    edge = []
    for c in (3, 11, 12, 39, 40, 41, 63, 64, 100, 1000, 2.0**31 - 1, 2.0**31, 2.0**32, 1e30,
              -1, -0.5, -0.999, 2.5, 0.999, 1e-40, np.nan, np.inf, -np.inf):
        for other in (0, 5, np.nan):
            edge.append([c, other, 0.1, -0.2, 0.3])
            edge.append([other, c, 0.1, -0.2, 0.3])
    ybin = (lin + rng.normal(size=n) * 0.5 > 0.3).astype(np.float64)
    cd = dict(num_leaves=15, learning_rate=0.2, min_data_in_leaf=5, min_data_per_group=5, cat_smooth=1,
              max_cat_to_onehot=4)
    lgb_case("categorical", dict(cd, objective="binary"), Xc, ybin, 15, categorical=(0, 1), extra_rows=edge)
    ymc = np.digitize(lin + rng.normal(size=n) * 0.5, [-1, 0.5, 1.5])
    lgb_case("categorical_multiclass", dict(cd, objective="multiclass", num_class=4), Xc, ymc, 6,
             categorical=(0, 1), extra_rows=edge)
    lgb_case("categorical_onehot", dict(cd, objective="regression", max_cat_to_onehot=64), Xc, lin, 8,
             categorical=(0, 1), extra_rows=edge)


if __name__ == "__main__":
    xgboost_cases()
    lightgbm_cases()
