"""Export the trained module for serving: TorchScript + ONNX + signature.json.

``model.onnx``: inputs ``numeric`` float32 [N, n_numeric] raw values (NaN = missing) and
``categorical`` int64 [N, n_cat] vocabulary indices; output ``probability`` float32 [N].
Imputation and normalisation are inside the graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from components.torch.model import FlightsNet, Preprocessing, encode_rows

ONNX_OPSET = 17


def signature_doc(prep: Preprocessing, contract_name: str, contract_version: int,
                  label_meaning: str) -> dict:
    return {
        "stack": "torch",
        "runtime": "onnx",
        "files": {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"},
        "contract": {"name": contract_name, "version": contract_version},
        "inputs": {
            "numeric": {"dtype": "float32", "shape": [None, len(prep.numeric)],
                        "columns": prep.numeric, "missing": "NaN"},
            "categorical": {"dtype": "int64", "shape": [None, len(prep.categorical)],
                            "columns": prep.categorical},
        },
        "vocabularies": prep.vocabularies,
        "oov_index": {c: prep.oov_index(c) for c in prep.categorical},
        "outputs": {"probability": {"dtype": "float32", "shape": [None], "meaning": label_meaning}},
    }


def export(model: FlightsNet, prep: Preprocessing, folder: str | Path, signature: dict) -> None:
    """Writes model.torchscript.pt, model.onnx and signature.json into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = (torch.zeros(2, len(prep.numeric)), torch.zeros(2, len(prep.categorical), dtype=torch.long))
    torch.jit.script(model).save(str(folder / "model.torchscript.pt"))
    torch.onnx.export(
        model, example, str(folder / "model.onnx"),
        input_names=["numeric", "categorical"], output_names=["probability"],
        dynamic_axes={"numeric": {0: "n"}, "categorical": {0: "n"}, "probability": {0: "n"}},
        opset_version=ONNX_OPSET, dynamo=False,
    )
    (folder / "signature.json").write_text(json.dumps(signature, indent=2))


def encode_with_signature(signature: dict, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Raw rows -> the ONNX inputs, using only what signature.json records."""
    return encode_rows(table, signature["inputs"]["numeric"]["columns"],
                       signature["inputs"]["categorical"]["columns"], signature["vocabularies"],
                       signature["oov_index"])


class OnnxScorer:
    """The pushed folder through onnxruntime: raw rows -> (numeric, categorical) arrays -> P.

    ``encode`` is the client's work (building the request), ``score`` the serving runtime's.
    """

    runtime = "onnx"

    def __init__(self, folder: str | Path):
        import onnxruntime as ort

        folder = Path(folder)
        self.signature = json.loads((folder / "signature.json").read_text())
        self.session = ort.InferenceSession(str(folder / "model.onnx"),
                                            providers=["CPUExecutionProvider"])

    def encode(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return encode_with_signature(self.signature, table)

    def score(self, encoded: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        numeric, cats = encoded
        return self.session.run(["probability"], {"numeric": numeric, "categorical": cats})[0]

    def predict(self, table: pd.DataFrame, batch_size: int = 65536) -> np.ndarray:
        """P for raw contract rows, encoded and scored ``batch_size`` rows at a time (one session
        for every call: the evaluate stage calls this per record batch of the eval rows)."""
        out = [self.score(self.encode(table.iloc[i:i + batch_size]))
               for i in range(0, len(table), batch_size)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def predict_onnx(folder: str | Path, table: pd.DataFrame, batch_size: int = 65536) -> np.ndarray:
    """Scores raw contract rows with the pushed folder alone (onnxruntime)."""
    return OnnxScorer(folder).predict(table, batch_size)
