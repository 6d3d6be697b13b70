"""The pushed TFX model's serving contract: signature.json, and scoring raw rows with it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from components.common.contract import Contract
from components.common.errors import DataError


def signature_doc(contract: Contract) -> dict:
    return {
        "stack": "tfx",
        "runtime": "tensorflow-saved-model",
        "signature": "serving_default",
        "contract": {"name": contract.name, "version": contract.version},
        "inputs": {
            "examples": {
                "dtype": "string",
                "shape": [None],
                "encoding": "serialized tf.train.Example with the raw contract features",
                "features": [
                    {"name": c.name, "type": c.type, "nullable": c.nullable}
                    for c in contract.features
                ],
            }
        },
        "outputs": {
            "probability": {
                "dtype": "float32",
                "shape": [None],
                "meaning": f"P({contract.label.source} >= {contract.label.threshold:g})",
            }
        },
    }


def signature_json(contract: Contract) -> str:
    return json.dumps(signature_doc(contract), indent=2)


class SavedModelScorer:
    """The SavedModel's ``serving_default`` signature: raw rows -> serialized tf.Examples -> P.

    ``encode`` is the client's work (building the request), ``score`` the serving runtime's.
    """

    runtime = "tensorflow-saved-model"

    def __init__(self, model_dir: str, feature_names: list[str] | None = None):
        import tensorflow as tf

        self._tf = tf
        if feature_names is None:
            with open(f"{model_dir}/signature.json") as f:
                feature_names = [x["name"] for x in json.load(f)["inputs"]["examples"]["features"]]
        self.names = list(feature_names)
        self.fn = tf.saved_model.load(model_dir).signatures["serving_default"]

    def encode(self, table: pd.DataFrame):
        from components.tfx.example_gen import row_to_example

        cols = table[self.names]
        rows = cols.astype(object).where(cols.notna(), None).to_dict("records")
        return self._tf.constant([row_to_example(r).SerializeToString() for r in rows])

    def score(self, encoded) -> np.ndarray:
        return self.fn(examples=encoded)["probability"].numpy()

    def predict(self, table: pd.DataFrame, batch_size: int = 4096) -> np.ndarray:
        """P for raw contract rows, ``batch_size`` rows per serving_default call."""
        from components.common.serving_bench import predict

        return predict(self, table, batch_size)


def predict_saved_model(model_dir: str, table: pd.DataFrame, batch_size: int = 4096,
                        feature_names: list[str] | None = None) -> np.ndarray:
    """Scores raw contract rows through the SavedModel's serving_default signature alone."""
    return SavedModelScorer(model_dir, feature_names).predict(table, batch_size)


def raw_arrays(inputs: dict, table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Raw contract rows -> the raw-tensor signature's inputs (signature.json ``exports``
    ``saved_model_raw.inputs``): one 1-D array per feature, a missing value as the entry's
    ``missing`` marker (NaN for floats, ``b""`` for strings)."""
    out = {}
    for name, spec in inputs.items():
        col = table[name]
        if spec["dtype"] == "string":
            text = col.astype(object).where(col.notna(), "").astype(str)
            out[name] = text.str.encode("utf-8").to_numpy(dtype=object)
        elif spec["dtype"].startswith("float"):
            out[name] = col.astype("float64").to_numpy(dtype=spec["dtype"], na_value=np.nan)
        else:  # int64: a required feature (a nullable int arrives as float64 with NaN)
            missing = int(col.isna().sum())
            if missing:
                raise DataError(
                    f"[tfx][serve] column {name}: {missing} row(s) without a value, but the "
                    "raw-tensor signature takes it as a required int64 (rule: not nullable in "
                    "the contract).")
            out[name] = col.to_numpy(dtype="int64")
    return out


def _exports(model_dir: str) -> dict:
    with open(f"{model_dir}/signature.json") as f:
        return json.load(f)["exports"]


class SavedModelRawScorer:
    """The SavedModel's ``serving_raw`` signature: raw rows -> one tensor per feature -> P."""

    runtime = "tensorflow-saved-model (serving_raw)"

    def __init__(self, model_dir: str):
        import tensorflow as tf

        from components.tfx.trainer import RAW_SIGNATURE

        self._tf = tf
        self.inputs = _exports(model_dir)["saved_model_raw"]["inputs"]
        self.fn = tf.saved_model.load(model_dir).signatures[RAW_SIGNATURE]

    def encode(self, table: pd.DataFrame) -> dict:
        return {k: self._tf.constant(v) for k, v in raw_arrays(self.inputs, table).items()}

    def score(self, encoded: dict) -> np.ndarray:
        return self.fn(**encoded)["probability"].numpy()


class TFLiteScorer:
    """``model.tflite`` in ``tf.lite.Interpreter`` (LiteRT; the Flex delegate loads by itself when
    the model holds TF Select ops): raw rows -> one array per feature -> P."""

    runtime = "tflite"

    def __init__(self, model_dir: str):
        import tensorflow as tf

        from components.tfx.trainer import RAW_SIGNATURE

        entry = _exports(model_dir)["tflite"]
        self.inputs = entry["inputs"]
        interpreter = tf.lite.Interpreter(model_path=f"{model_dir}/{entry['file']}")
        self.runner = interpreter.get_signature_runner(RAW_SIGNATURE)

    def encode(self, table: pd.DataFrame) -> dict:
        return raw_arrays(self.inputs, table)

    def score(self, encoded: dict) -> np.ndarray:
        return self.runner(**encoded)["probability"]
