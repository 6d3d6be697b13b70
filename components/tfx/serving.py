"""The pushed TFX model's serving contract: signature.json, and scoring raw rows with it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from components.common.contract import Contract


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


def predict_saved_model(model_dir: str, table: pd.DataFrame, batch_size: int = 4096,
                        feature_names: list[str] | None = None) -> np.ndarray:
    """Scores raw contract rows through the SavedModel's serving_default signature alone."""
    scorer = SavedModelScorer(model_dir, feature_names)
    out = [scorer.score(scorer.encode(table.iloc[i:i + batch_size]))
           for i in range(0, len(table), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
