"""The Table 1 runner."""

from __future__ import annotations

import numpy as np
from conftest import small_config

from koala_lib import experiments


def test_table1_runner_fills_every_column(ci_data, tmp_path):
    base = small_config(snapshot_images=0)
    runs = (experiments.Table1Run(1, 40, 2, 1), experiments.Table1Run(2, 4, 3, 2))
    result = experiments.run_table1(ci_data, tmp_path, base, batch_scale=0.5,
                                    max_micro_batch=8, runs=runs, verbose=0)
    assert [row["run"] for row in result.rows] == [
        "baseline: gray (a = b = 0)", "baseline: training mean a,b", "run 1: 40/2/1",
        "run 2: 4/3/2"]
    for row in result.rows:
        for column in experiments.TABLE_COLUMNS:
            assert row[column] not in (None, ""), (row["run"], column)
            if isinstance(row[column], float):
                assert np.isfinite(row[column]), (row["run"], column)
    gray = result.rows[0]
    assert gray["mean chroma"] < 0.5 and gray["measured"].startswith("grayish")
    assert "20 (x0.5 of 40)" in result.rows[2]["batch as run"]
    assert result.rows[2]["updates"] == 2 and result.rows[3]["updates"] == 6
    markdown, table = experiments.write_table(result.rows, tmp_path / "table1")
    assert len(markdown.read_text().splitlines()) == 2 + 4  # header, rule, four rows
    assert len(table.read_text().splitlines()) == 1 + 4
