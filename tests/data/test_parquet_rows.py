"""EpisodeRows: one episode's rows of a parquet data file, whatever its row groups hold, and only the columns asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clearvla.data.formats.parquet_rows import EpisodeRows
from clearvla.errors import DataError


def _episode(index: int, length: int) -> pa.Table:
    return pa.table({"episode_index": [index] * length, "frame_index": list(range(length)),
                     "mask": [[index] * 4] * length})


def _write(path: Path, episodes: dict[int, int], *, per_group: int, statistics: bool = True) -> Path:
    """Episodes {index: length}, `per_group` episodes to a row group."""
    tables = [_episode(i, n) for i, n in episodes.items()]
    with pq.ParquetWriter(path, tables[0].schema, write_statistics=statistics) as writer:
        for k in range(0, len(tables), per_group):
            writer.write_table(pa.concat_tables(tables[k:k + per_group]))
    return path


@pytest.mark.parametrize("per_group, statistics", [(1, True), (2, True), (3, False)])
def test_reads_one_episode_whatever_the_row_groups(tmp_path: Path, per_group: int, statistics: bool) -> None:
    episodes = {4: 3, 5: 2, 7: 4}
    rows = EpisodeRows(_write(tmp_path / "f.parquet", episodes, per_group=per_group, statistics=statistics))
    for index, length in episodes.items():
        table = rows.read(index)
        assert table.column("episode_index").to_pylist() == [index] * length
        assert table.column("frame_index").to_pylist() == list(range(length))
    assert len(rows.read(6)) == 0  # between two episodes: none of its rows here


def test_reads_only_the_columns_asked_for_and_ignores_absent_ones(tmp_path: Path) -> None:
    rows = EpisodeRows(_write(tmp_path / "f.parquet", {0: 2, 1: 3}, per_group=1))
    table = rows.read(1, ["frame_index", "next.done"])
    assert table.column_names == ["frame_index", "episode_index"] and len(table) == 3


def test_a_file_one_episode_only_partly_fills_is_sliced_to_it(tmp_path: Path) -> None:
    """LeRobot's own writer puts many episodes in a row group; the slice is exactly the episode's frames."""
    rows = EpisodeRows(_write(tmp_path / "f.parquet", {i: 5 + i for i in range(6)}, per_group=6))
    mask = np.stack(rows.read(3).column("mask").to_numpy(zero_copy_only=False))
    assert mask.shape == (8, 4) and (mask == 3).all()


def test_bad_files_name_themselves(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet: cannot read parquet data file"):
        EpisodeRows(bad)
    pq.write_table(pa.table({"frame_index": [0, 1]}), tmp_path / "noep.parquet")
    with pytest.raises(DataError, match="noep.parquet: no 'episode_index' column"):
        EpisodeRows(tmp_path / "noep.parquet")
