"""The output folder's layout: every file and folder a run writes, named once.

::

    OUT/
      spans/                      SPANS: the published monthly spans (components.common.spans)
        span-YYYYMM/{train,eval,excluded}/data.parquet
        manifest.json             MANIFEST_JSON: rows per span and split
        history/span-YYYYMM.json  the spans' profiles, the drift references
      validation/                 VALIDATION: the shared ingest's gate report when it refused
      environment.json            ENVIRONMENT_JSON: versions, cores, memory, GPUs
      tuning.json                 TUNING_JSON: the tuning sweep (`twinpipe tune`, run --tuning)
      report/                     REPORT: index.html (REPORT_HTML) + report.json (REPORT_JSON)
      <stack>/                    tfx | torch
        run.json                  RUN_JSON: the stack's run summary (components.common.runinfo)
        validation/               VALIDATION: gate.json (GATE_JSON), alerts.jsonl (ALERTS_JSONL)
        pushed/                   PUSHED: the registry, current.json (CURRENT_JSON) + versions,
                                  each with signature.json (SIGNATURE_JSON)
        measurements.json         MEASUREMENTS_JSON: the model scored outside the pipeline
        scaling.json              SCALING_JSON: 1 vs N workers at fixed threads
        exports.json              EXPORTS_JSON: every export scored and timed
        serving_load.json         SERVING_LOAD_JSON: the model server under load
        fault_tolerance.json      FAULT_TOLERANCE_JSON: a worker killed mid-training
      validation_engines.json     VALIDATION_ENGINES_JSON: the validation engines compared
      ledger/<sha256>.json        the deliveries a local run took from a landing folder
                                  (components.common.landing)
      ledger/<stack>/<sha256>.json  those each compiled stack's pipeline took (its first step)
      timeline.jsonl              TIMELINE_JSONL: a replay's ticks (pipelines.replay)
"""

SPANS = "spans"
MANIFEST_JSON = "manifest.json"
VALIDATION = "validation"
GATE_JSON = "gate.json"
ALERTS_JSONL = "alerts.jsonl"
ENVIRONMENT_JSON = "environment.json"
TUNING_JSON = "tuning.json"
REPORT = "report"
REPORT_HTML = "index.html"
REPORT_JSON = "report.json"
RUN_JSON = "run.json"
PUSHED = "pushed"
CURRENT_JSON = "current.json"
SIGNATURE_JSON = "signature.json"
TRAIN_METRICS_JSON = "train_metrics.json"
MEASUREMENTS_JSON = "measurements.json"
SCALING_JSON = "scaling.json"
EXPORTS_JSON = "exports.json"
SERVING_LOAD_JSON = "serving_load.json"
FAULT_TOLERANCE_JSON = "fault_tolerance.json"
VALIDATION_ENGINES_JSON = "validation_engines.json"
TIMELINE_JSONL = "timeline.jsonl"
