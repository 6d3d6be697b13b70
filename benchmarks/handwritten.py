"""The zero-orchestration limit: one process doing the same stages on the same spans, by hand.

    python -m benchmarks.handwritten --framework torch|tf --spans OUT/spans --out DIR

ingest: read the spans' train/eval Parquet; validate: the contract's column checks (types,
nulls, ranges, vocabularies) on column statistics; train: the same model (embeddings + 64-32 MLP,
imputation + z-scoring from train statistics) for the same epochs, batch and learning rate, one
process, no distribution strategy; evaluate: the shared metrics on the eval rows; push: save the
servable model (TorchScript + ONNX / SavedModel) into a folder. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from components.common.contract import load_contract
from components.common.metrics import binary_metrics
from components.common.spans import read_spans
from components.torch.model import fit_preprocessing


def check_contract(contract, df: pd.DataFrame) -> list[str]:
    """The contract's column rules on one split's statistics; returns the violations."""
    problems = []
    for c in contract.features:
        if c.name not in df.columns:
            problems.append(f"{c.name}: missing")
            continue
        col = df[c.name]
        if not c.nullable and col.isna().any():
            problems.append(f"{c.name}: nulls")
        if c.numeric:
            lo, hi = col.min(), col.max()
            if c.min is not None and lo < c.min or c.max is not None and hi > c.max:
                problems.append(f"{c.name}: range")
        elif c.vocabulary:
            unseen = set(col.dropna().astype(str).unique()) - set(c.vocabulary)
            if unseen:
                problems.append(f"{c.name}: unseen {sorted(unseen)[:3]}")
    return problems


def train_torch(prep, train, label, epochs, batch, lr, hidden):
    import torch

    from components.torch.model import FlightsNet

    torch.manual_seed(0)
    x_num, x_cat = prep.encode(train)
    y = torch.from_numpy(train[label].to_numpy(np.float32))
    x_num, x_cat = torch.from_numpy(x_num), torch.from_numpy(x_cat)
    model = FlightsNet(prep, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCELoss()
    n = len(y) // batch * batch
    t_steady, seen = None, 0
    for _ in range(epochs):
        perm = torch.randperm(len(y))[:n]
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss_fn(model(x_num[idx], x_cat[idx]), y[idx]).backward()
            opt.step()
            if t_steady is None:
                t_steady = time.perf_counter()
            else:
                seen += batch
    sps = seen / (time.perf_counter() - t_steady)
    return model.eval(), sps


def train_tf(prep, train, label, epochs, batch, lr, hidden):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    keras = tf.keras
    x_num, x_cat = prep.encode(train)
    mean, std = np.array(prep.means, np.float32), np.array(prep.stds, np.float32)
    x_num = (np.where(np.isnan(x_num), mean, x_num) - mean) / std
    num_in = keras.Input((x_num.shape[1],), name="numeric")
    cat_in = keras.Input((x_cat.shape[1],), name="categorical", dtype=tf.int64)
    parts = [num_in]
    for j, c in enumerate(prep.categorical):
        n = len(prep.vocabularies[c]) + 1
        col = keras.layers.Lambda(lambda t, j=j: t[:, j])(cat_in)
        parts.append(keras.layers.Embedding(n, min(8, max(2, int(round(n**0.5)))))(col))
    x = keras.layers.Concatenate()(parts)
    for u in hidden:
        x = keras.layers.Dense(u, activation="relu")(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model([num_in, cat_in], out)
    model.compile(keras.optimizers.Adam(lr), "binary_crossentropy")
    y = train[label].to_numpy(np.float32)
    n = len(y) // batch * batch

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, b, logs=None):
            if not hasattr(self, "t0"):
                self.t0 = time.perf_counter()

    clock = Clock()
    model.fit([x_num[:n], x_cat[:n]], y[:n], batch_size=batch, epochs=epochs, shuffle=True,
              verbose=0, callbacks=[clock])
    steps = epochs * (n // batch)
    sps = (steps - 1) * batch / (time.perf_counter() - clock.t0)
    return (model, mean, std), sps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--framework", choices=("torch", "tf"), required=True)
    p.add_argument("--spans", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    args = p.parse_args(argv)
    contract = load_contract()
    numeric = [c.name for c in contract.numeric_features]
    categorical = [c.name for c in contract.categorical_features]
    label = contract.label.name
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    walls = {}

    t = time.perf_counter()
    train = read_spans(args.spans, "train").to_pandas()
    evalset = read_spans(args.spans, "eval").to_pandas()
    walls["ingest"] = time.perf_counter() - t

    t = time.perf_counter()
    problems = check_contract(contract, train) + check_contract(contract, evalset)
    walls["validate"] = time.perf_counter() - t
    if problems:
        print(json.dumps({"error": problems}))
        return 1

    t = time.perf_counter()
    prep = fit_preprocessing(train, numeric, categorical)
    trainer = train_torch if args.framework == "torch" else train_tf
    model, sps = trainer(prep, train, label, args.epochs, args.batch_size, args.learning_rate, (64, 32))
    walls["train"] = time.perf_counter() - t

    t = time.perf_counter()
    x_num, x_cat = prep.encode(evalset)
    if args.framework == "torch":
        import torch

        with torch.no_grad():
            probs = model(torch.from_numpy(x_num), torch.from_numpy(x_cat)).numpy()
    else:
        m, mean, std = model
        probs = m.predict([(np.where(np.isnan(x_num), mean, x_num) - mean) / std, x_cat],
                          batch_size=8192, verbose=0)[:, 0]
    metrics = binary_metrics(evalset[label].to_numpy(), probs)
    walls["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    if args.framework == "torch":
        import torch

        torch.jit.script(model).save(str(out / "model.torchscript.pt"))
        torch.onnx.export(model, (torch.zeros(2, len(numeric)), torch.zeros(2, len(categorical),
                                                                            dtype=torch.long)),
                          str(out / "model.onnx"), input_names=["numeric", "categorical"],
                          output_names=["probability"], opset_version=17, dynamo=False,
                          dynamic_axes={"numeric": {0: "n"}, "categorical": {0: "n"}})
    else:
        model[0].save(str(out / "saved_model"), save_format="tf")
    walls["push"] = time.perf_counter() - t
    print(json.dumps({"framework": args.framework, "rows": len(train) + len(evalset),
                      "stages": {k: round(v, 3) for k, v in walls.items()},
                      "total_s": round(sum(walls.values()), 3), "samples_per_s": round(sps, 1),
                      "auc": round(metrics["auc"], 6)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
