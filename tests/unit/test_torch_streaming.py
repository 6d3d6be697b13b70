"""The torch train app's streaming parts on their own: the row-group sharding of
components.common.rows, the preprocessing statistics accumulated batch by batch and across ranks
(equal to the one-shot pandas fit on the same real rows), the vectorised category encoding (equal
to a per-value lookup) and the per-rank batch stream (equal steps, every row once, bounded)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from components.common import rows
from components.common.contract import load_contract
from components.torch.model import PreprocessingStats, encode_rows, fit_preprocessing
from components.torch.trainer import part_stats, shard_batches

CONTRACT = load_contract()
NUMERIC = [c.name for c in CONTRACT.numeric_features]
CATEGORICAL = [c.name for c in CONTRACT.categorical_features]


def _groups(*sizes: int) -> list[rows.RowGroup]:
    return [rows.RowGroup(f"f{i // 2}", i % 2, n) for i, n in enumerate(sizes)]


def _covered(pieces: list[rows.Piece], groups: list[rows.RowGroup]) -> list[int]:
    """The global row numbers the pieces cover, in order."""
    first = np.cumsum([0] + [g.rows for g in groups])
    where = {g: first[i] for i, g in enumerate(groups)}
    return [int(where[p.group]) + r for p in pieces for r in range(p.start, p.stop)]


# --- rows.shard ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, world", [
    ((7, 3, 10, 1, 5), 2), ((7, 3, 10, 1, 5), 3), ((7, 3, 10, 1, 5), 26),
    ((4,), 3), ((100, 1), 7), ((2, 2), 5),  # more ranks than row groups
])
def test_equal_shards_are_contiguous_equal_and_drop_only_the_tail(sizes, world):
    groups = _groups(*sizes)
    total = sum(sizes)
    n = total // world
    covered = [_covered(rows.shard(groups, r, world), groups) for r in range(world)]
    for r, rows_of_r in enumerate(covered):
        assert rows_of_r == list(range(r * n, (r + 1) * n))  # contiguous, n rows each
    for r in range(world):
        for p in rows.shard(groups, r, world):
            assert 0 <= p.start < p.stop <= p.group.rows  # only groups it overlaps, non-empty
    # the total % world rows dropped are the last ones of the order
    assert sorted(sum(covered, [])) == list(range(total - total % world))


@pytest.mark.parametrize("sizes, world", [((7, 3, 10, 1, 5), 3), ((4,), 3), ((2, 2), 5)])
def test_unequal_parts_cover_every_row_once(sizes, world):
    groups = _groups(*sizes)
    parts = [_covered(rows.shard(groups, r, world, equal=False), groups) for r in range(world)]
    assert sum(parts, []) == list(range(sum(sizes)))


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match=r"rank 2 is not in \[0, 2\)"):
        rows.shard(_groups(5), 2, 2)


def test_row_groups_and_pieces_read_the_rows_they_name(tmp_path):
    table = pa.table({"i": np.arange(23)})
    pq.write_table(table.slice(0, 10), tmp_path / "a.parquet", row_group_size=4)  # 4, 4, 2
    pq.write_table(table.slice(10), tmp_path / "b.parquet", row_group_size=8)  # 8, 5
    groups = rows.row_groups(tmp_path)
    assert [(g.file.rsplit("/", 1)[-1], g.index, g.rows) for g in groups] == [
        ("a.parquet", 0, 4), ("a.parquet", 1, 4), ("a.parquet", 2, 2),
        ("b.parquet", 0, 8), ("b.parquet", 1, 5)]
    for r in range(3):
        got = [v for p in rows.shard(groups, r, 3) for v in rows.read_piece(p, ["i"])["i"].to_pylist()]
        assert got == list(range(r * 7, (r + 1) * 7))


# --- preprocessing: one streaming pass equals the one-shot fit ----------------------------------

def _reference_fit(train: pd.DataFrame, numeric, categorical):
    """The one-shot pandas fit the train app used before it streamed (means/stds over the whole
    column, vocabularies from one value_counts)."""
    means, stds = [], []
    for name in numeric:
        x = train[name].astype("float64")
        means.append(float(x.mean()) if x.notna().any() else 0.0)
        std = float(x.std(ddof=0)) if x.notna().sum() > 1 else 1.0
        stds.append(std if std > 1e-9 else 1.0)
    vocabs = {}
    for name in categorical:
        counts = train[name].astype(str).value_counts()
        vocabs[name] = sorted(counts.index, key=lambda v: (-counts[v], v))
    return means, stds, vocabs


@pytest.fixture(scope="module")
def real_train(tmp_path_factory):
    """Three months of the real flights' train rows in one file of uneven row groups."""
    from components.common.ingest import ingest

    base = tmp_path_factory.mktemp("flights")
    ingest(CONTRACT, base / "spans", months=[1, 6, 12])
    table = rows.dataset(base / "spans").to_table()
    path = base / "train.parquet"
    pq.write_table(table, path, row_group_size=7_001)
    return path, table.to_pandas()


def test_streamed_statistics_equal_the_one_shot_fit_on_real_rows(real_train):
    path, frame = real_train
    means, stds, vocabs = _reference_fit(frame, NUMERIC, CATEGORICAL)
    groups = rows.row_groups(path)
    assert len(groups) >= 9
    for world in (1, 3):  # parts per rank, merged in rank order as the app does
        merged = PreprocessingStats(NUMERIC, CATEGORICAL)
        for r in range(world):
            merged.merge(part_stats(groups, NUMERIC, CATEGORICAL, r, world))
        prep = merged.result()
        np.testing.assert_allclose(prep.means, means, rtol=1e-9)
        np.testing.assert_allclose(prep.stds, stds, rtol=1e-9)
        assert prep.vocabularies == vocabs
    # fit_preprocessing on rows in memory is the same accumulator
    one_shot = fit_preprocessing(frame, NUMERIC, CATEGORICAL)
    np.testing.assert_allclose(one_shot.means, means, rtol=1e-12)
    np.testing.assert_allclose(one_shot.stds, stds, rtol=1e-12)
    assert one_shot.vocabularies == vocabs


def test_moments_merge_without_cancellation():
    """A large offset and a small spread: sum-of-squares formulas lose every digit here."""
    rng = np.random.default_rng(0)
    x = 1e9 + rng.normal(0, 1e-3, 10_000)
    stats = PreprocessingStats(["x"], [])
    for chunk in np.array_split(x, 7):
        stats.update(pd.DataFrame({"x": chunk}))
    prep = stats.result()
    assert prep.means[0] == pytest.approx(x.mean(), rel=1e-15)
    assert prep.stds[0] == pytest.approx(x.std(), rel=1e-6)


def test_empty_and_constant_columns_keep_the_defaults():
    frame = pd.DataFrame({"none": [np.nan] * 4, "one": [np.nan, 3.0, np.nan, np.nan],
                          "const": [2.0] * 4, "c": ["b", "a", None, "b"]})
    prep = fit_preprocessing(frame, ["none", "one", "const"], ["c"])
    assert prep.means == [0.0, 3.0, 2.0] and prep.stds == [1.0, 1.0, 1.0]
    assert prep.vocabularies == {"c": ["b", "None", "a"]}  # a missing value is its str()


# --- encoding: vectorised, equal to a per-value lookup ------------------------------------------

def test_vectorised_encoding_equals_the_per_value_lookup(real_train):
    _, frame = real_train
    prep = fit_preprocessing(frame.iloc[: len(frame) // 2], NUMERIC, CATEGORICAL)
    probe = pd.concat([frame, pd.DataFrame({"carrier": ["ZZ", None], "origin": [np.nan, "EWR"],
                                            "dest": ["nan", "None"]})], ignore_index=True)
    num, cat = prep.encode(probe)
    for j, name in enumerate(CATEGORICAL):
        index = {v: i for i, v in enumerate(prep.vocabularies[name])}
        expected = [index.get(v, prep.oov_index(name)) for v in probe[name].astype(str)]
        np.testing.assert_array_equal(cat[:, j], expected)
    assert cat[-2, 0] == prep.oov_index("carrier") and cat[-1, 2] == prep.oov_index("dest")
    assert cat[-1, 1] == prep.vocabularies["origin"].index("EWR")
    np.testing.assert_array_equal(num, probe[NUMERIC].astype("float64").to_numpy(np.float32))
    # an empty vocabulary: everything is OOV (index 0)
    _, cat = encode_rows(probe.head(3), [], ["carrier"], {"carrier": []}, {"carrier": 0})
    assert cat.tolist() == [[0], [0], [0]]


# --- the per-rank batch stream ------------------------------------------------------------------

def test_shard_batches_take_equal_steps_see_each_row_once_and_reshuffle_per_epoch(tmp_path):
    n = 5_000
    frame = pd.DataFrame({"x": np.arange(n, dtype=float), "c": np.where(np.arange(n) % 3, "a", "b"),
                          "delayed": np.arange(n) % 2})
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=333)
    groups = rows.row_groups(path)
    prep = fit_preprocessing(frame, ["x"], ["c"])
    world, batch = 3, 64
    seen = []
    for r in range(world):
        pieces = rows.shard(groups, r, world)
        shard = sum(p.rows for p in pieces)
        # a buffer smaller than the shard: rows mix across buffers' leftovers, never duplicate
        epoch0 = list(shard_batches(pieces, prep, "delayed", batch, np.random.default_rng([0, 0, r]),
                                    torch.device("cpu"), buffer_rows=500))
        assert len(epoch0) == shard // batch == (n // world) // batch
        xs = torch.cat([b[0][:, 0] for b in epoch0]).numpy()
        assert len(set(xs)) == len(xs) and xs.min() >= r * shard and xs.max() < (r + 1) * shard
        for xn, xc, y in epoch0:  # the label travels with its row
            assert xn.shape == (batch, 1) and xc.dtype == torch.int64
            np.testing.assert_array_equal(y.numpy(), xn[:, 0].numpy() % 2)
        epoch1 = list(shard_batches(pieces, prep, "delayed", batch, np.random.default_rng([0, 1, r]),
                                    torch.device("cpu"), buffer_rows=500))
        assert not torch.equal(epoch0[0][0], epoch1[0][0])  # a new order each epoch
        seen.append(set(xs))
    assert not set.intersection(*seen)
