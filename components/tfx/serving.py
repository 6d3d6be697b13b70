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


def predict_saved_model(model_dir: str, table: pd.DataFrame, batch_size: int = 4096) -> np.ndarray:
    """Scores raw contract rows through the SavedModel's serving_default signature alone."""
    import tensorflow as tf

    from components.tfx.example_gen import row_to_example

    with open(f"{model_dir}/signature.json") as f:
        names = [x["name"] for x in json.load(f)["inputs"]["examples"]["features"]]
    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    rows = table[names].astype(object).where(table[names].notna(), None).to_dict("records")
    out = []
    for i in range(0, len(rows), batch_size):
        batch = [row_to_example(r).SerializeToString() for r in rows[i : i + batch_size]]
        out.append(fn(examples=tf.constant(batch))["probability"].numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
