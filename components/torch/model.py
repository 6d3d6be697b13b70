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
    """The one raw-rows encoding, used in training and from signature.json at serving time."""
    values = table[numeric].astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)
    cats = np.empty((len(table), len(categorical)), dtype=np.int64)
    for j, name in enumerate(categorical):
        index = {v: i for i, v in enumerate(vocabularies[name])}
        cats[:, j] = [index.get(v, oov_index[name]) for v in table[name].astype(str)]
    return values, cats


def fit_preprocessing(train: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Preprocessing:
    """Statistics of the train split only (the same rule as the TFX stack's Transform)."""
    means, stds = [], []
    for name in numeric:
        x = train[name].astype("float64")
        means.append(float(x.mean()) if x.notna().any() else 0.0)
        std = float(x.std(ddof=0)) if x.notna().sum() > 1 else 1.0
        stds.append(std if std > 1e-9 else 1.0)
    vocabs = {}
    for name in categorical:
        counts = train[name].astype(str).value_counts()
        # Frequency order, ties broken by value: deterministic across processes.
        vocabs[name] = sorted(counts.index, key=lambda v: (-counts[v], v))
    return Preprocessing(numeric, categorical, means, stds, vocabs)


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
