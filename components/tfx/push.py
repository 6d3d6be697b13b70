"""Push on the TFX stack: the blessed SavedModel and its exports into the versioned registry,
atomically.

Beside the SavedModel, push converts ``model.tflite`` from its raw-tensor signature and describes
every export in ``signature.json`` (:mod:`components.tfx.export`).

The model is copied (``tf.io.gfile``, from the Trainer's local artifact) into a local temporary
folder, and :func:`components.common.registry.push_atomic` publishes it: a rename into a local
destination, or an upload through :mod:`components.common.storage` into a ``gs://`` one (model
files, then push.json last, then ``current.json``) — TF's own GCS client is never used for it.
"""


from tfx import v1 as tfx
from tfx.types.standard_artifacts import Model, ModelBlessing, PushedModel

from components.common import registry, storage
from components.common.layout import SIGNATURE_JSON
from components.tfx.export import add_exports


@tfx.dsl.components.component
def AtomicPusher(  # noqa: N802 (TFX component naming)
    model: tfx.dsl.components.InputArtifact[Model],
    model_blessing: tfx.dsl.components.InputArtifact[ModelBlessing],
    pushed_model: tfx.dsl.components.OutputArtifact[PushedModel],
    push_destination: tfx.dsl.components.Parameter[str],
    signature_json: tfx.dsl.components.Parameter[str],
    run_label: tfx.dsl.components.Parameter[str],
) -> None:
    """Publishes model + signature.json as a new version only when the Evaluator blessed it."""
    import json
    import logging
    import os

    from tfx.utils import io_utils, path_utils


    blessed = model_blessing.get_int_custom_property("blessed") == 1
    pushed_model.set_int_custom_property("pushed", 0)
    if not blessed:
        logging.getLogger("twinpipe.tfx.push").info("[tfx][push] model not blessed: not pushed")
        return


    signature = json.loads(signature_json)

    def fill(tmp):
        io_utils.copy_dir(path_utils.serving_model_path(model.uri), str(tmp))
        # The raw-tensor signature and TFLite, each recorded converted or not (never raised).
        doc = add_exports(tmp, signature)
        with open(os.path.join(tmp, SIGNATURE_JSON), "w") as f:
            json.dump(doc, f, indent=2)
        record["exports"] = {k: v["converted"] for k, v in doc["exports"].items()}

    record = {"stack": "tfx", "run": run_label, "model_uri": model.uri,
              "signature": signature["signature"]}
    version = registry.push_atomic(push_destination, fill, record)
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_string_custom_property("pushed_destination", str(version))
    pushed_model.set_string_custom_property("pushed_version", storage.basename(version))
    logging.getLogger("twinpipe.tfx.push").info("[tfx][push] pushed %s", version)
