"""The PyTorch stack's model and its preprocessing, saved together.

Preprocessing is fitted on the train split only (means/stds for imputation + z-scoring,
vocabularies in frequency order with one OOV index) and lives inside the module as buffers, so
TorchScript and ONNX exports take raw values: ``numeric`` float32 [N, n_numeric] (NaN = missing)
and ``categorical`` int64 [N, n_cat] vocabulary indices.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn


@dataclass
class Preprocessing:
    numeric: list[str]
    categorical: list[str]
    means: list[float]
    stds: list[float]
    vocabularies: dict[str, list[str]]

    def oov_index(self, name: str) -> int:
        return len(self.vocabularies[name])

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        return cls(**json.loads(text))

    def encode(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw contract rows -> (numeric float32 with NaN, categorical int64 indices)."""
        oov = {name: self.oov_index(name) for name in self.categorical}
        return encode_rows(table, self.numeric, self.categorical, self.vocabularies, oov)


def encode_rows(table: pd.DataFrame, numeric: list[str], categorical: list[str],
                vocabularies: dict[str, list[str]], oov_index: dict[str, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """The one raw-rows encoding, used in training and from signature.json at serving time.

    A category is looked up as its ``str()`` (a missing value is ``"None"``/``"nan"``, as the
    vocabulary counted it) through a hash index over the vocabulary, vectorised: an unknown value
    gets the OOV index."""
    values = table[numeric].astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)
    cats = np.empty((len(table), len(categorical)), dtype=np.int64)
    for j, name in enumerate(categorical):
        codes = pd.Index(vocabularies[name], dtype=object).get_indexer(table[name].astype(str))
        cats[:, j] = np.where(codes < 0, oov_index[name], codes)
    return values, cats


class PreprocessingStats:
    """The train split's preprocessing statistics, accumulated batch by batch (:meth:`update`)
    and mergeable across parts (:meth:`merge`: a rank's part of the split), so no process holds
    the split. Numeric columns keep (count, mean, sum of squared deviations) in float64, merged
    with Chan et al.'s pairwise formula — accurate where sum/sum-of-squares would cancel; a
    categorical column keeps its value counts. :meth:`result` is the fitted Preprocessing."""

    def __init__(self, numeric: list[str], categorical: list[str]):
        self.numeric, self.categorical = list(numeric), list(categorical)
        self.n = np.zeros(len(numeric), dtype=np.int64)
        self.mean = np.zeros(len(numeric), dtype=np.float64)
        self.m2 = np.zeros(len(numeric), dtype=np.float64)
        self.counts: dict[str, dict[str, int]] = {name: {} for name in categorical}

    def _merge_moments(self, j: int, n: int, mean: float, m2: float) -> None:
        if n == 0:
            return
        total = self.n[j] + n
        delta = mean - self.mean[j]
        self.mean[j] += delta * n / total
        self.m2[j] += m2 + delta * delta * self.n[j] * n / total
        self.n[j] = total

    def update(self, frame: pd.DataFrame) -> PreprocessingStats:
        for j, name in enumerate(self.numeric):
            x = frame[name].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
            x = x[~np.isnan(x)]
            if len(x):
                mean = float(x.mean())
                self._merge_moments(j, len(x), mean, float(np.square(x - mean).sum()))
        for name in self.categorical:
            counts = self.counts[name]
            for value, c in frame[name].astype(str).value_counts(sort=False).items():
                counts[value] = counts.get(value, 0) + int(c)
        return self

    def merge(self, other: PreprocessingStats) -> PreprocessingStats:
        for j in range(len(self.numeric)):
            self._merge_moments(j, int(other.n[j]), float(other.mean[j]), float(other.m2[j]))
        for name in self.categorical:
            counts = self.counts[name]
            for value, c in other.counts[name].items():
                counts[value] = counts.get(value, 0) + c
        return self

    def result(self) -> Preprocessing:
        means = [float(m) if n > 0 else 0.0 for n, m in zip(self.n, self.mean, strict=True)]
        stds = []
        for n, m2 in zip(self.n, self.m2, strict=True):
            std = float(np.sqrt(m2 / n)) if n > 1 else 1.0  # ddof=0
            stds.append(std if std > 1e-9 else 1.0)
        # Frequency order, ties broken by value: deterministic across processes.
        vocabs = {name: sorted(c, key=lambda v, c=c: (-c[v], v)) for name, c in self.counts.items()}
        return Preprocessing(self.numeric, self.categorical, means, stds, vocabs)


def fit_preprocessing(train: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Preprocessing:
    """Statistics of the train split only (the same rule as the TFX stack's Transform), for rows
    in memory; the train app streams the same accumulator over its record batches."""
    return PreprocessingStats(numeric, categorical).update(train).result()


class FlightsNet(nn.Module):
    """Imputation + z-scoring + embeddings + MLP -> P(delayed)."""

    def __init__(self, prep: Preprocessing, hidden_units: tuple[int, ...] = (64, 32)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(prep.means, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(prep.stds, dtype=torch.float32))
        sizes = [len(prep.vocabularies[c]) + 1 for c in prep.categorical]  # + OOV
        self.embeddings = nn.ModuleList(
            nn.Embedding(n, min(8, max(2, int(round(n**0.5))))) for n in sizes
        )
        width = len(prep.numeric) + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = []
        for units in hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        x = torch.where(torch.isnan(numeric), self.mean, numeric)
        x = (x - self.mean) / self.std
        parts = [x] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        if len(self.embeddings) == 0:
            # No categorical feature: its [N, 0] input still enters the graph, so the ONNX export
            # keeps the input that signature.json declares (the exporter drops unused inputs).
            parts.append(categorical[:, :0].to(x.dtype))
        return torch.sigmoid(self.mlp(torch.cat(parts, dim=1))).squeeze(1)
