"""An order-independent fingerprint of a set of rows by their key columns (the contract's
``split.key``), the same for both stacks: what the report's "identical eval rows" check compares.

Each row's key values are rendered as canonical text by the split rule's own
:func:`components.common.split.key_text` (values joined by "|", integral numbers without
decimals); the row hash is SHA-256 of that text; the digest is SHA-256 over the sorted row hashes
concatenated. Row order does not matter; an added, dropped, duplicated or changed row does.

Before rendering, each value is put in the form a tf.Example holds, so rows read back from the
TFX stack's TFRecords and from the PyTorch stack's Parquet render alike: bytes as UTF-8 text,
booleans as integers, floats at float32 precision (tf.Example's float_list), and a missing value
(None, NaN, pandas NA: an absent feature in a tf.Example) as None.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.common.split import key_text


@dataclass(frozen=True)
class RowsDigest:
    sha256: str
    rows: int


def canonical(value: object) -> object:
    """One key value as the split rule renders it after a round trip through tf.Example."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return float(np.float32(value))
    return value


def row_hash(values: Sequence[object]) -> bytes:
    """SHA-256 of one row's canonical key text."""
    return hashlib.sha256(key_text(canonical(v) for v in values).encode("utf-8")).digest()


class Digester:
    """:func:`rows_digest` fed in parts (e.g. record batches of the eval split): keeps only each
    row's 32-byte hash (a NumPy array per part, sorted once at the end), never the rows, and gives
    the same digest as the rows all at once."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []

    def update(self, rows: Iterable[Sequence[object]]) -> None:
        hashes = [row_hash(r) for r in rows]
        if hashes:
            self._parts.append(np.array(hashes, dtype="S32"))

    def update_frame(self, df: pd.DataFrame, key: Sequence[str]) -> None:
        """Adds ``df``'s rows by their ``key`` columns (e.g. ``contract.split.key``)."""
        missing = [c for c in key if c not in df.columns]
        if missing:
            raise KeyError(f"key column(s) {missing} not in the rows (columns: {list(df.columns)})")
        self.update(df[list(key)].astype(object).itertuples(index=False, name=None))

    def result(self) -> RowsDigest:
        # Fixed-width S32 sorts as bytes do (memcmp over the 32 bytes), so this is the order of
        # sorted(bytes) and the concatenation is the one rows_digest hashes.
        hashes = np.sort(np.concatenate(self._parts)) if self._parts else np.zeros(0, "S32")
        return RowsDigest(hashlib.sha256(hashes.tobytes()).hexdigest(), len(hashes))


def rows_digest(rows: Iterable[Sequence[object]]) -> RowsDigest:
    """The digest of rows given as key-value tuples (in the contract's ``split.key`` order)."""
    d = Digester()
    d.update(rows)
    return d.result()


def frame_digest(df: pd.DataFrame, key: Sequence[str]) -> RowsDigest:
    """:func:`rows_digest` of a DataFrame's ``key`` columns (e.g. ``contract.split.key``)."""
    d = Digester()
    d.update_frame(df, key)
    return d.result()


def key_hashes(df: pd.DataFrame, key: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each row's split key (the duplicates rule), the same for the same key
    whatever the input's format: numbers compared as float64 (an int column with a missing value
    elsewhere in its file is Int64, without one int64), everything else as text."""
    norm = {}
    for k in key:
        s = df[k]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            norm[k] = s.astype("float64")
        else:
            norm[k] = s.astype("string")
    return pd.util.hash_pandas_object(pd.DataFrame(norm, index=df.index), index=False).to_numpy(
        dtype=np.uint64)
