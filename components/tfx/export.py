"""The TFX stack's exports, produced at push and described in signature.json's ``exports``.

* ``saved_model``: the SavedModel's ``serving_default`` over serialized tf.Examples (the
  reference: what TFMA evaluated and ``twinpipe predict`` serves);
* ``saved_model_raw``: the same SavedModel's ``serving_raw`` signature over one raw tensor per
  feature, Transform layer inside (saved by the Trainer, :func:`components.tfx.trainer.serving_signatures`);
* ``tflite``: ``model.tflite``, converted from ``serving_raw`` by ``tf.lite.TFLiteConverter``.
  Builtin TFLite ops are tried first; only when they cannot express the graph is the conversion
  redone with ``SELECT_TF_OPS`` (the Flex delegate: TF kernels inside the TFLite runtime), and the
  entry names the ops that needed it with the builtin-only error.

A conversion that fails is recorded (``converted: false`` and the error), never raised: the push
goes on with the exports that did convert.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from components.common.contract import Contract
from components.common.errors import ERROR_CHARS, DataError, short_error
from components.common.layout import SIGNATURE_JSON
from components.common.serving_bench import predict
from components.tfx.raw_inputs import as_parsed, raw_input_dtype

log = logging.getLogger("twinpipe.tfx.push")

TFLITE_FILE = "model.tflite"
REFERENCE = "saved_model"
# Files push adds beside the SavedModel; not part of the SavedModel's own size.
EXTRA_FILES = (TFLITE_FILE, SIGNATURE_JSON)
def _signature_inputs(model_dir: str | Path, key: str) -> dict | None:
    """{input name: dtype name} of signature ``key``, read from saved_model.pb without loading
    the graph (None when the SavedModel has no such signature)."""
    import tensorflow as tf
    from tensorflow.python.saved_model import loader_impl

    sigs = loader_impl.parse_saved_model(str(model_dir)).meta_graphs[0].signature_def
    if key not in sigs:
        return None
    return {name: tf.dtypes.as_dtype(info.dtype).name for name, info in sorted(sigs[key].inputs.items())}


def raw_inputs_doc(dtypes: dict[str, str]) -> dict:
    """signature.json's description of the raw-tensor inputs: one 1-D tensor per feature and what
    stands for a missing value (see :func:`components.tfx.raw_inputs.raw_input_dtype`)."""
    missing = {"float32": "NaN", "float64": "NaN", "string": '""'}
    return {name: {"dtype": dtype, "shape": [None], "missing": missing.get(dtype)}
            for name, dtype in dtypes.items()}


def _flex_ops(error: str) -> list[str]:
    """The ops the converter listed as needing TF Select (``TF Select ops: A, B``)."""
    m = re.search(r"TF Select ops: ([^\n]+)", error)
    return sorted({op.strip() for op in m.group(1).split(",")}) if m else []


def freeze_asset_paths(model_dir: str | Path, target: str | Path) -> int:
    """Copies the SavedModel to ``target`` with each asset file's path a constant; returns how
    many reads of an asset path it replaced.

    Why: a TF2 SavedModel hands its asset paths (Transform's vocabulary files) to the table
    initializers through variables assigned at load time. TF 2.16's TFLite converter cannot freeze
    those, and silently drops the initializers: the model converts, then fails at its first lookup
    ("hashtable need to be initialized"). With the path a constant, the converter reads the
    vocabulary at conversion time and keeps the table's initializer (a CALL_ONCE init subgraph).
    Only the graph's path plumbing changes; the parity measurement checks the result against
    ``serving_default`` on real rows."""
    import shutil

    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    model_dir, target = Path(model_dir), Path(target)
    shutil.copytree(model_dir, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(*EXTRA_FILES, "fingerprint.pb"))
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((model_dir / "saved_model.pb").read_bytes())
    mg = sm.meta_graphs[0]
    placeholders = {a.tensor_info.name.split(":")[0]: a.filename for a in mg.asset_file_def}
    asset_vars = {n.input[0].split(":")[0]: placeholders[n.input[1].split(":")[0]]
                  for n in mg.graph_def.node
                  if n.op == "AssignVariableOp" and n.input[1].split(":")[0] in placeholders}
    replaced = 0
    for node in mg.graph_def.node:
        if node.op == "ReadVariableOp" and node.input[0].split(":")[0] in asset_vars:
            path = str(target / "assets" / asset_vars[node.input[0].split(":")[0]])
            tensor = tf.make_tensor_proto(path, tf.string)
            node.op = "Const"
            node.ClearField("attr")
            del node.input[:]
            node.attr["dtype"].type = tensor.dtype
            node.attr["value"].tensor.CopyFrom(tensor)
            replaced += 1
    (target / "saved_model.pb").write_bytes(sm.SerializeToString())
    return replaced


def convert_tflite(model_dir: str | Path, signature: str, target: str | Path) -> dict:
    """Converts SavedModel signature ``signature`` to ``target``; returns the export's record."""
    import tensorflow as tf

    t0 = time.perf_counter()
    record: dict = {"select_tf_ops": False}

    work = tempfile.TemporaryDirectory(prefix="tflite-convert-")
    source = Path(work.name) / "saved_model"

    def convert(select: bool) -> bytes:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(source), signature_keys=[signature])
        if select:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                              tf.lite.OpsSet.SELECT_TF_OPS]
        return conv.convert()

    try:
        if frozen := freeze_asset_paths(model_dir, source):
            record["asset_paths_frozen"] = frozen
        try:
            with _quiet_stderr():  # its MLIR error lines are in the exception too
                flat = convert(select=False)
        except Exception as e:  # noqa: BLE001 — builtins could not express it: try TF Select
            text = str(e)
            if "ERROR_NEEDS_FLEX_OPS" not in text and "TF Select ops" not in text:
                raise
            record.update(select_tf_ops=True, flex_ops=_flex_ops(text),
                          builtin_only_error=short_error(_converter_summary(text)))
            flat = convert(select=True)
        Path(target).write_bytes(flat)
        _smoke_run(target, signature)
        record.update(converted=True, error=None)
    except Exception as e:  # noqa: BLE001 — recorded in signature.json, the push goes on
        record.update(converted=False, error=short_error(e))
        Path(target).unlink(missing_ok=True)  # no model.tflite that does not run
        log.warning("[tfx][push] TFLite conversion failed: %s", record["error"])
    finally:
        work.cleanup()
    record["convert_s"] = round(time.perf_counter() - t0, 3)
    return record


def _smoke_run(path: str | Path, signature: str) -> None:
    """Runs the converted model once on one all-missing row: a conversion can succeed and still
    give a model the interpreter cannot run (e.g. a lookup table whose initializer it dropped)."""
    import numpy as np
    import tensorflow as tf

    runner = tf.lite.Interpreter(model_path=str(path)).get_signature_runner(signature)
    row = {}
    for name, detail in runner.get_input_details().items():
        dtype = detail["dtype"]
        row[name] = (np.array([b""], dtype=object) if dtype in (np.bytes_, np.object_)
                     else np.array([np.nan if np.issubdtype(dtype, np.floating) else 0], dtype))
    try:
        runner(**row)
    except Exception as e:
        why = (" (the converter dropped the initializers of lookup tables read from vocabulary "
               "files, Transform's compute_and_apply_vocabulary: it keeps only tables initialized "
               "from tensors)" if "hashtable need to be initialized" in str(e) else "")
        raise RuntimeError(f"converted, but tf.lite.Interpreter cannot run it: {e}{why}") from e


@contextlib.contextmanager
def _quiet_stderr():
    """Silences file descriptor 2 (the converter's C++ code writes there, below Python's
    sys.stderr): a builtin-only attempt that fails would print pages of MLIR errors into the push
    log for what is recorded, not an error."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _converter_summary(text: str) -> str:
    """The converter error's readable part (from "Some ops are not supported"), else its end."""
    i = text.find("Some ops are not supported")
    return text[i:] if i >= 0 else text[-ERROR_CHARS:]


def add_exports(folder: str | Path, signature: dict) -> dict:
    """Produces the exports beside the SavedModel in ``folder`` (the version being pushed) and
    returns ``signature`` with its ``exports`` and ``reference`` filled in."""
    from components.tfx.export import RAW_SIGNATURE, RAW_SIGNATURE_ERROR, SERVING_SIGNATURE

    folder = Path(folder)
    outputs = signature.get("outputs", {})
    exports = {
        "saved_model": {
            "file": ".", "format": "tf-saved-model", "signature": SERVING_SIGNATURE,
            "runtime": "tensorflow (tf.saved_model.load)",
            "inputs": {"examples": {"dtype": "string", "shape": [None],
                                    "encoding": "serialized tf.train.Example (see inputs)"}},
            "outputs": outputs, "converted": True, "error": None,
        },
    }
    raw = _signature_inputs(folder, RAW_SIGNATURE)
    raw_entry = {"file": ".", "format": "tf-saved-model", "signature": RAW_SIGNATURE,
                 "runtime": "tensorflow (tf.saved_model.load)",
                 "inputs": raw_inputs_doc(raw) if raw else None, "outputs": outputs}
    if raw is None:
        err_file = folder / "assets.extra" / RAW_SIGNATURE_ERROR
        error = (err_file.read_text() if err_file.exists()
                 else f"the SavedModel has no {RAW_SIGNATURE} signature (trained before it existed?)")
        exports["saved_model_raw"] = {**raw_entry, "converted": False, "error": short_error(error)}
    else:
        exports["saved_model_raw"] = {**raw_entry, "converted": True, "error": None}
    tflite = {"file": TFLITE_FILE, "format": "tflite", "signature": RAW_SIGNATURE,
              "converted_from": "saved_model_raw", "runtime": "tf.lite.Interpreter (LiteRT)",
              "inputs": raw_entry["inputs"], "outputs": outputs}
    if raw is None:
        tflite.update(converted=False, error=f"no {RAW_SIGNATURE} signature to convert from")
    else:
        tflite.update(convert_tflite(folder, RAW_SIGNATURE, folder / TFLITE_FILE))
    exports["tflite"] = tflite
    for name, entry in exports.items():
        if entry["converted"]:
            log.info("[tfx][push] export %s: %s%s", name, entry["file"],
                     " (TF Select ops: " + ", ".join(entry.get("flex_ops") or ["?"]) + ")"
                     if entry.get("select_tf_ops") else "")
    return {**signature, "reference": REFERENCE, "exports": exports}


def saved_model_bytes(folder: str | Path) -> int:
    """The SavedModel's own size: every file in ``folder`` but the other exports beside it."""
    folder = Path(folder)
    extra = {folder / f for f in EXTRA_FILES}
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p not in extra)


def export_bytes(folder: str | Path, entry: dict) -> int | None:
    """The size of one export's file (the SavedModel's for ``file: .``); None when absent."""
    path = Path(folder) / entry["file"]
    if entry["file"] == ".":
        return saved_model_bytes(folder)
    return path.stat().st_size if path.is_file() else None


__all__ = ["TFLITE_FILE", "REFERENCE", "add_exports", "convert_tflite", "raw_inputs_doc",
           "saved_model_bytes", "export_bytes"]


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
                "meaning": contract.label.meaning,
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
        from components.tfx.ingest import row_to_example

        cols = table[self.names]
        rows = cols.astype(object).where(cols.notna(), None).to_dict("records")
        return self._tf.constant([row_to_example(r).SerializeToString() for r in rows])

    def score(self, encoded) -> np.ndarray:
        return self.fn(examples=encoded)["probability"].numpy()

    def predict(self, table: pd.DataFrame, batch_size: int = 4096) -> np.ndarray:
        """P for raw contract rows, ``batch_size`` rows per serving_default call."""

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

        from components.tfx.export import RAW_SIGNATURE

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

        from components.tfx.export import RAW_SIGNATURE

        entry = _exports(model_dir)["tflite"]
        self.inputs = entry["inputs"]
        interpreter = tf.lite.Interpreter(model_path=f"{model_dir}/{entry['file']}")
        self.runner = interpreter.get_signature_runner(RAW_SIGNATURE)

    def encode(self, table: pd.DataFrame) -> dict:
        return raw_arrays(self.inputs, table)

    def score(self, encoded: dict) -> np.ndarray:
        return self.runner(**encoded)["probability"]


SERVING_SIGNATURE = "serving_default"


RAW_SIGNATURE = "serving_raw"  # raw feature tensors in, the Transform layer inside (issue 15)


RAW_SIGNATURE_ERROR = "serving_raw.error.txt"  # under assets.extra/ when serving_raw failed


def _serving_fn(model, tft_output, feature_names):
    """``serving_default``: serialized tf.Examples -> parse -> the Transform layer -> P."""
    import tensorflow as tf

    model.tft_layer = tft_output.transform_features_layer()
    raw_spec = {k: v for k, v in tft_output.raw_feature_spec().items() if k in feature_names}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        parsed = tf.io.parse_example(serialized, raw_spec)
        transformed = model.tft_layer(parsed)
        return {"probability": tf.squeeze(model(transformed), axis=1)}

    return serve


def _raw_serving_fn(model, tft_output, feature_names):
    """``serving_raw``: one 1-D tensor per raw feature (no tf.Example) -> the Transform layer -> P.

    What tf.io.parse_example would give the Transform layer is rebuilt from the dense inputs: a
    required feature becomes [N, 1], a nullable one a SparseTensor [N, 1] holding only the present
    values (NaN / "" = absent, :mod:`components.tfx.raw_inputs`). TFLite converts from this signature: no
    string parsing of protos inside.

    The batch gets one padding row, whose probability is dropped: the TFLite runtime (TF 2.16)
    fails on a batch of one row whose nullable numeric feature is missing (an empty SparseTensor
    there loses its rank before the model's Concatenate); the pad row's numbers are present (0),
    its strings a copy of row 0's. The TF runtime gives the same probabilities either way."""
    import tensorflow as tf

    if not hasattr(model, "tft_layer"):
        model.tft_layer = tft_output.transform_features_layer()
    raw_spec = {k: v for k, v in sorted(tft_output.raw_feature_spec().items()) if k in feature_names}
    names = list(raw_spec)
    specs = [tf.TensorSpec([None], tf.dtypes.as_dtype(raw_input_dtype(raw_spec[n])), name=n)
             for n in names]

    def padded(x):  # one more row (see the docstring)
        if x.dtype == tf.string:  # a copy of row 0: TFLite's builtin Gather takes strings, Concat not
            return tf.gather(x, tf.concat([tf.range(tf.shape(x)[0]), [0]], axis=0))
        return tf.concat([x, tf.zeros([1], x.dtype)], axis=0)  # 0: a present value

    @tf.function(input_signature=specs)
    def serve(*tensors):
        parsed = {n: as_parsed(raw_spec[n], padded(x)) for n, x in zip(names, tensors, strict=True)}
        transformed = model.tft_layer(parsed)
        return {"probability": tf.squeeze(model(transformed), axis=1)[:-1]}

    return serve


def serving_signatures(model, tft_output, feature_names) -> tuple[dict, str | None]:
    """The SavedModel's signatures: ``serving_default`` (tf.Examples) and, unless it cannot be
    traced, ``serving_raw`` (raw feature tensors); and that failure's error, else None. A
    ``serving_raw`` failure never fails training: its error goes to ``assets.extra/``
    (:data:`RAW_SIGNATURE_ERROR`), which push records."""
    signatures = {SERVING_SIGNATURE: _serving_fn(model, tft_output, feature_names)}
    try:
        raw = _raw_serving_fn(model, tft_output, feature_names)
        raw.get_concrete_function()  # traces now: an error surfaces here, not inside model.save
        signatures[RAW_SIGNATURE] = raw
    except Exception as e:  # noqa: BLE001 — recorded, see the docstring
        log.warning("[tfx][train] no %s signature: %s", RAW_SIGNATURE, e)
        return signatures, f"{type(e).__name__}: {e}"
    return signatures, None


def save_serving_model(model, target: str, signatures: dict, error: str | None) -> None:
    """model.save with the signatures of :func:`serving_signatures` (and the raw signature's
    error, if any, as ``assets.extra/`` text)."""
    import tensorflow as tf

    model.save(target, save_format="tf", signatures=signatures)
    if error is not None:
        tf.io.gfile.makedirs(f"{target}/assets.extra")
        with tf.io.gfile.GFile(f"{target}/assets.extra/{RAW_SIGNATURE_ERROR}", "w") as f:
            f.write(error)
