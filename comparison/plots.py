"""The report's plots: matplotlib figures as embedded PNG, one color per stack."""

from __future__ import annotations

import base64
import io

from comparison.sections import STACK_NAMES
from components.common.config import STAGES

COLORS = {"tfx": "#e8710a", "torch": "#1a73e8", "tfx-tfrecord": "#9e9e9e"}


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def series(runs):
    """(label, run, stack) for each stack of each run."""
    for r in runs:
        for stack in r["stacks"]:
            label = STACK_NAMES[stack] if len(runs) == 1 else f"{stack} · {r['label']}"
            yield label, r, stack


def grouped_bars(runs, categories, value, title, unit, log=False, fmt="%.3g"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    named = list(series(runs))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / max(1, len(named))
    x = np.arange(len(categories))
    for i, (label, r, stack) in enumerate(named):
        vals = [value(r, stack, c) or 0.0 for c in categories]
        bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=label,
                      color=COLORS[stack], alpha=1.0 - 0.35 * (i // 2))
        ax.bar_label(bars, fmt=fmt, fontsize=7)
    ax.set_xticks(x, categories)
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def curves(runs, kind):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4))
    for label, r, stack in series(runs):
        m = r["stacks"][stack].get("measurements")
        if not m:
            continue
        if kind == "roc":
            ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], color=COLORS[stack],
                    label=f"{label} (AUC {m['metrics']['auc']:.3f})")
        else:
            ax.plot(m["calibration"]["predicted"], m["calibration"]["observed"], "o-",
                    color=COLORS[stack], label=label)
    ax.plot([0, 1], [0, 1], "--", color="#888", lw=1)
    ax.set_xlabel("false positive rate" if kind == "roc" else "mean predicted probability")
    ax.set_ylabel("true positive rate" if kind == "roc" else "observed delayed fraction")
    ax.set_title("ROC on the identical eval rows" if kind == "roc" else "Calibration (10 bins)",
                 fontsize=10)
    ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "upper left")
    ax.grid(alpha=0.3)
    return png(fig)


def loglog(points: dict, field: str, title: str, unit: str) -> str:
    """``field`` per stage and stack against rows, log-log; one colour per stack, one marker
    per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = dict(zip(STAGES, "osD^v", strict=False))
    fig, ax = plt.subplots(figsize=(7, 4))
    for stack, p in points.items():
        for stage in STAGES:
            ys = p[stage][field]
            xy = [(x, y) for x, y in zip(p["rows"], ys, strict=True) if y and y > 0]
            if xy:
                ax.plot(*zip(*xy, strict=True), marker=markers.get(stage, "o"),
                        color=COLORS.get(stack, "#555"), label=f"{stack} {stage}", alpha=0.85)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows ingested")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, which="both")
    return png(fig)
