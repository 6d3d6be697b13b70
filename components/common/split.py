"""The train/eval split rule, identical for both stacks (see the contract's ``split`` section)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from components.common.contract import SplitRule

TRAIN, EVAL = "train", "eval"


def key_text(values: Iterable[object]) -> str:
    """The canonical text of a row key: values joined by '|', integers without decimals."""
    parts = []
    for v in values:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        parts.append(str(v))
    return "|".join(parts)


def bucket(text: str) -> int:
    """0..999: the first 8 bytes of SHA-256(text), big-endian, modulo 1000."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % 1000


def split_of(values: Sequence[object], rule: SplitRule) -> str:
    """Split name of one row given its key values in ``rule.key`` order."""
    return EVAL if bucket(key_text(values)) < rule.eval_per_mille else TRAIN


def assign_splits(df: pd.DataFrame, rule: SplitRule) -> np.ndarray:
    """Vectorised :func:`split_of`: an array of 'train'/'eval' for each row of ``df``."""
    keys = df[list(rule.key)].astype(object).itertuples(index=False, name=None)
    buckets = np.fromiter((bucket(key_text(k)) for k in keys), dtype=np.int64, count=len(df))
    return np.where(buckets < rule.eval_per_mille, EVAL, TRAIN)
