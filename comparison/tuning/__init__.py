"""Best against best: each stack's configuration measured on the run's hardware.

* :mod:`comparison.tuning.choice`: the rule (candidates, admissibility, the choice, the file);
* :mod:`comparison.tuning.sweep`: the measuring (a seeded slice trained by each stack's own
  code per point) and :func:`~comparison.tuning.sweep.resolve`, what a run applies;
* :mod:`comparison.tuning.section`: the report's Tuning section.
"""

from comparison.tuning.choice import (
    AUC_TOLERANCE,
    KIND,
    MIN_GAIN,
    admissible,
    apply,
    candidates,
    choose,
    cores,
    estimated_train_s,
    load,
    matches,
    settings,
    tuning_path,
    why,
)
from comparison.tuning.sweep import resolve, tune

__all__ = ["AUC_TOLERANCE", "KIND", "MIN_GAIN", "admissible", "apply", "candidates", "choose", "cores",
           "estimated_train_s", "load", "matches", "resolve", "settings", "tune", "tuning_path", "why"]
