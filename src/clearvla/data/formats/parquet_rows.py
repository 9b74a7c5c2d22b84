"""One episode's rows of a parquet data file, read without reading the rest of the file.

A LeRobot v3 data file holds many episodes (ours: one row group per episode, about 900 to a file). Reading the whole
file for every episode a training loader draws cost 4x the loader's CPU per frame on a 4,000-episode recording with
three cameras' masks (`benchmarks/data_throughput.py --dataset`), more than decoding its videos; the file's own row-group statistics say which row groups hold an episode, so
only those, and only the columns asked for, are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clearvla.errors import DataError

EPISODE_COLUMN = "episode_index"


class EpisodeRows:
    """The row groups of one parquet file indexed by the episode_index range each holds. A file written without
    column statistics is read whole on every `read`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{path}: cannot read parquet data file ({e})") from None
        self.columns = self._file.schema_arrow.names
        if EPISODE_COLUMN not in self.columns:
            raise DataError(f"{path}: no {EPISODE_COLUMN!r} column (has {', '.join(self.columns)})")
        meta, column = self._file.metadata, self.columns.index(EPISODE_COLUMN)
        ranges: list[tuple[int, int]] | None = []
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(column).statistics
            if stats is None or not stats.has_min_max:
                ranges = None
                break
            ranges.append((int(stats.min), int(stats.max)))
        self._ranges = ranges

    def read(self, episode: int, columns: Sequence[str] | None = None) -> pa.Table:
        """The rows of `episode` (contiguous, in file order) with `columns` that the file has (None: all); an empty
        table when the file holds none of its rows."""
        wanted = None if columns is None else [c for c in dict.fromkeys([*columns, EPISODE_COLUMN]) if c in self.columns]
        try:
            if self._ranges is None:
                table = self._file.read(columns=wanted)
            else:
                groups = [g for g, (lo, hi) in enumerate(self._ranges) if lo <= episode <= hi]
                if not groups:
                    return self._file.schema_arrow.empty_table().select(wanted or self.columns)
                table = self._file.read_row_groups(groups, columns=wanted)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{self.path}: cannot read parquet data file ({e})") from None
        rows = np.flatnonzero(table.column(EPISODE_COLUMN).to_numpy() == episode)
        if len(rows) and rows[-1] - rows[0] + 1 != len(rows):
            raise DataError(f"{self.path}: episode {episode}'s rows are not contiguous")
        return table.slice(int(rows[0]), len(rows)) if len(rows) else table.slice(0, 0)
