"""Export the trained module for serving: ONNX (dynamo exporter), a torch.export ExportedProgram
(.pt2), TorchScript, the eager reference, and signature.json describing each.

Every export takes the same raw inputs: ``numeric`` float32 [N, n_numeric] raw values (NaN =
missing) and ``categorical`` int64 [N, n_cat] vocabulary indices; output ``probability`` float32
[N]. Imputation and normalisation are inside the graph.

* ``model.onnx``: ``torch.onnx.export(..., dynamo=True)`` from the ExportedProgram (onnxruntime
  serves it: evaluate, ``twinpipe predict``). Only if the dynamo exporter fails is the legacy
  TorchScript-based exporter used, and the entry says so with the dynamo error.
* ``model.pt2``: ``torch.export.export`` + ``torch.export.save`` (load with
  ``torch.export.load(...).module()``), batch dimension dynamic.
* ``model.torchscript.pt``: ``torch.jit.script`` while the pinned torch still has it (deprecated
  since torch 2.11; the entry records the warning torch gives).
* ``model.eager.pt``: the trained state dict with its preprocessing and layer sizes: the eager
  FlightsNet, the reference every export's probabilities are compared with.

A conversion that fails is recorded in signature.json (``converted: false`` and the error),
never raised: push goes on with the exports that converted.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from components.common.errors import short_error
from components.common.layout import SIGNATURE_JSON
from components.common.serving_bench import predict
from components.torch.model import FlightsNet, Preprocessing, encode_rows

ONNX_OPSET = 17  # the legacy exporter's opset (the dynamo exporter picks its own, recorded)
FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "torchscript": "model.torchscript.pt"}
REFERENCE_FILE = "model.eager.pt"

log = logging.getLogger("twinpipe.torch.train")


def signature_doc(prep: Preprocessing, contract_name: str, contract_version: int,
                  label_meaning: str) -> dict:
    return {
        "stack": "torch",
        "runtime": "onnx",
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


def _warned(caught: list) -> list[str]:
    """The distinct deprecation/future warnings an export raised (what the user would be told)."""
    seen: list[str] = []
    for w in caught:
        if issubclass(w.category, DeprecationWarning | FutureWarning):
            text = str(w.message).strip().splitlines()[0][:300]
            if text not in seen:
                seen.append(text)
    return seen


def _attempt(name: str, fn, deprecation: bool = False) -> tuple[object, dict]:
    """Runs one export; returns (its result or None, its signature.json record). With
    ``deprecation`` the record keeps the deprecation warnings the export API gave (TorchScript's);
    other exports' warnings come from torch internals and say nothing about the export."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result, record = fn(), {"converted": True, "error": None}
        except Exception as e:  # noqa: BLE001 — recorded in signature.json, never raised
            result, record = None, {"converted": False, "error": short_error(e)}
            log.warning("[torch][train] export %s failed: %s", name, record["error"])
    record["export_s"] = round(time.perf_counter() - t0, 3)
    if deprecation and (deprecations := _warned(caught)):
        record["warnings"] = deprecations
    return result, record


def _hidden_units(model: FlightsNet) -> list[int]:
    linear = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    return [m.out_features for m in linear[:-1]]


def load_reference(folder: str | Path) -> FlightsNet:
    """The eager FlightsNet saved beside the exports (:data:`REFERENCE_FILE`), in eval mode."""
    saved = torch.load(Path(folder) / REFERENCE_FILE, map_location="cpu", weights_only=True)
    model = FlightsNet(Preprocessing.from_json(saved["preprocessing"]),
                       tuple(saved["hidden_units"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def export(model: FlightsNet, prep: Preprocessing, folder: str | Path, signature: dict) -> dict:
    """Writes every export, the eager reference and signature.json (with ``exports``) into
    ``folder``; returns the signature document written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = (torch.zeros(2, len(prep.numeric)),
               torch.zeros(2, len(prep.categorical), dtype=torch.long))
    batch = torch.export.Dim("batch")
    dynamic = {"numeric": {0: batch}, "categorical": {0: batch}}
    inputs = {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in signature["inputs"].items()}
    outputs = signature["outputs"]
    exports: dict[str, dict] = {}

    def program():
        ep = torch.export.export(model, example, dynamic_shapes=dynamic)
        torch.export.save(ep, str(folder / FILES["pt2"]))
        return ep

    ep, rec = _attempt("pt2", program)
    exports["pt2"] = {"file": FILES["pt2"], "format": "torch.export ExportedProgram",
                      "runtime": "torch.export.load(...).module()", "inputs": inputs,
                      "outputs": outputs, **rec}

    def onnx_dynamo():
        # The dynamo exporter logs a warning per torchvision op it cannot register: noise here.
        logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
        program = torch.onnx.export(ep if ep is not None else model,
                                    () if ep is not None else example,
                                    input_names=["numeric", "categorical"],
                                    output_names=["probability"],
                                    dynamic_shapes=None if ep is not None else dynamic,
                                    dynamo=True, verbose=False)
        program.save(str(folder / FILES["onnx"]))
        return {"exporter": "dynamo (torch.onnx.export(..., dynamo=True))",
                "opset": _onnx_opset(folder / FILES["onnx"])}

    how, rec = _attempt("onnx", onnx_dynamo)
    if how is None:  # the serving runtime of this stack: fall back rather than push no ONNX

        def onnx_legacy():
            torch.onnx.export(
                model, example, str(folder / FILES["onnx"]),
                input_names=["numeric", "categorical"], output_names=["probability"],
                dynamic_axes={"numeric": {0: "n"}, "categorical": {0: "n"},
                              "probability": {0: "n"}},
                opset_version=ONNX_OPSET, dynamo=False,
            )
            return {"exporter": "TorchScript-based (fallback: the dynamo exporter failed)",
                    "opset": ONNX_OPSET}

        dynamo_error = rec["error"]
        how, rec = _attempt("onnx (legacy)", onnx_legacy)
        rec["dynamo_error"] = dynamo_error
    exports["onnx"] = {"file": FILES["onnx"], "format": "onnx", "runtime": "onnxruntime",
                       **(how or {}), "inputs": inputs, "outputs": outputs, **rec}

    _, rec = _attempt("torchscript",
                      lambda: torch.jit.script(model).save(str(folder / FILES["torchscript"])),
                      deprecation=True)
    exports["torchscript"] = {"file": FILES["torchscript"], "format": "torchscript",
                              "runtime": "torch.jit.load", "inputs": inputs, "outputs": outputs,
                              **rec}

    torch.save({"state_dict": model.state_dict(), "preprocessing": prep.to_json(),
                "hidden_units": _hidden_units(model)}, folder / REFERENCE_FILE)
    exports = {k: exports[k] for k in ("onnx", "pt2", "torchscript")}  # the report's order
    doc = {**signature,
           "files": {k: FILES[k] for k in ("onnx", "torchscript") if exports[k]["converted"]},
           "reference": {"file": REFERENCE_FILE, "format": "torch state dict (FlightsNet, eager)",
                         "load": "components.torch.export.load_reference"},
           "exports": exports}
    (folder / SIGNATURE_JSON).write_text(json.dumps(doc, indent=2))
    return doc


def _onnx_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


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
        self.signature = json.loads((folder / SIGNATURE_JSON).read_text())
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

        return predict(self, table, batch_size)


def predict_onnx(folder: str | Path, table: pd.DataFrame, batch_size: int = 65536) -> np.ndarray:
    """Scores raw contract rows with the pushed folder alone (onnxruntime)."""
    return OnnxScorer(folder).predict(table, batch_size)


class _TorchModuleScorer:
    """A torch module (exported or eager) on the raw rows, encoded from signature.json alone."""

    runtime = "torch"

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.signature = json.loads((folder / SIGNATURE_JSON).read_text())
        self.module = self._load(folder)

    def _load(self, folder: Path):
        raise NotImplementedError

    def encode(self, table: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        numeric, cats = encode_with_signature(self.signature, table)
        return torch.from_numpy(numeric), torch.from_numpy(cats)

    def score(self, encoded: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
        with torch.inference_mode():
            return self.module(*encoded).numpy()


class ExportedProgramScorer(_TorchModuleScorer):
    """``model.pt2`` through ``torch.export.load(...).module()``."""

    runtime = "torch.export"

    def _load(self, folder: Path):
        return torch.export.load(str(folder / FILES["pt2"])).module()


class TorchScriptScorer(_TorchModuleScorer):
    """``model.torchscript.pt`` through ``torch.jit.load``."""

    runtime = "torchscript"

    def _load(self, folder: Path):
        return torch.jit.load(str(folder / FILES["torchscript"]), map_location="cpu").eval()


class EagerScorer(_TorchModuleScorer):
    """The trained FlightsNet in eager PyTorch (:data:`REFERENCE_FILE`): the reference."""

    runtime = "torch-eager"

    def _load(self, folder: Path):
        return load_reference(folder)
