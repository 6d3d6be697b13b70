"""A conversion that fails is recorded in signature.json (converted: false + the error), never
raised: push goes on with the exports that did convert (issue 15)."""

import json

import numpy as np
import pandas as pd
import torch

from components.torch.export import OnnxScorer, export, signature_doc
from components.torch.model import FlightsNet, Preprocessing


class DataDependentNet(FlightsNet):
    """Branches on the values of its input: torch.export cannot capture that without a guard."""

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        p = super().forward(numeric, categorical)
        if bool(torch.nan_to_num(numeric).sum() > 0):
            return p
        return 1 - p


def test_torch_export_records_a_failed_export_and_keeps_the_others(tmp_path):
    prep = Preprocessing(["a", "b"], ["c"], [0.0, 0.0], [1.0, 1.0], {"c": ["x", "y"]})
    torch.manual_seed(0)
    doc = export(DataDependentNet(prep), prep, tmp_path, signature_doc(prep, "t", 1, "P"))
    written = json.loads((tmp_path / "signature.json").read_text())
    assert written == json.loads(json.dumps(doc))
    pt2 = written["exports"]["pt2"]
    assert pt2["converted"] is False and pt2["error"] and not (tmp_path / "model.pt2").exists()
    # ONNX is this stack's serving runtime: it is pushed through whichever exporter worked.
    onnx = written["exports"]["onnx"]
    assert onnx["converted"] is True and (tmp_path / "model.onnx").is_file()
    if not onnx["exporter"].startswith("dynamo"):
        assert onnx["dynamo_error"]
    table = pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, 0.5], "c": ["x", "zz"]})
    assert OnnxScorer(tmp_path).predict(table).shape == (2,)
    # TorchScript cannot compile super().forward: recorded too; "files" lists only what exists.
    ts = written["exports"]["torchscript"]
    assert ts["converted"] or (ts["error"] and not (tmp_path / "model.torchscript.pt").exists())
    assert ("torchscript" in written["files"]) == ts["converted"]


def test_tfx_exports_record_a_missing_signature_and_a_failed_conversion(tmp_path):
    import tensorflow as tf

    from components.tfx.export import add_exports, convert_tflite

    rec = convert_tflite(tmp_path / "no-model", "serving_raw", tmp_path / "m.tflite")
    assert rec["converted"] is False and rec["error"] and not (tmp_path / "m.tflite").exists()

    class Old(tf.Module):  # a SavedModel from before the raw-tensor signature existed
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            return {"probability": tf.zeros_like(tf.strings.length(examples), tf.float32)}

    old = Old()
    tf.saved_model.save(old, str(tmp_path / "sm"), signatures={"serving_default": old.serve})
    doc = add_exports(tmp_path / "sm", {"outputs": {"probability": {}}})
    ex = doc["exports"]
    assert ex["saved_model"]["converted"] is True
    assert ex["saved_model_raw"]["converted"] is False and "serving_raw" in ex["saved_model_raw"]["error"]
    assert ex["tflite"]["converted"] is False and ex["tflite"]["error"]
    assert not (tmp_path / "sm" / "model.tflite").exists()
