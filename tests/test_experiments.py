"""The Table 1 runner."""

from __future__ import annotations

import re

import numpy as np
from conftest import ROOT, small_config

from koala_lib import experiments


def test_table1_runner_fills_every_column(ci_data, tmp_path):
    base = small_config(snapshot_images=0)
    runs = (experiments.Table1Run(1, 40, 2, 1, "more grayish"),
            experiments.Table1Run(2, 4, 3, 2, "Brownish"))
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
    assert [row["report"] for row in result.rows[2:]] == ['"more grayish"', '"Brownish"']
    assert result.rows[2]["updates"] == 2 and result.rows[3]["updates"] == 6
    markdown, table = experiments.write_table(result.rows, tmp_path / "table1")
    assert len(markdown.read_text().splitlines()) == 2 + 4  # header, rule, four rows
    assert len(table.read_text().splitlines()) == 1 + 4


def test_each_table1_run_quotes_its_own_report_comment():
    reference = (ROOT.parent / "shared" / "reference" / "000_4bde306a509b3d46.txt")
    comments = [run.report for run in experiments.TABLE1]
    assert len(set(comments)) == 3  # runs 2 and 3 share "Brownish/Reddish image output"
    if reference.exists():  # the report's own table rows, beside the checkout
        text = reference.read_text()
        for run in experiments.TABLE1:
            row = re.compile(rf"\|\s*{run.batch}\s*\|\s*{run.steps}\s*\|\s*{run.epochs}\s*\|")
            line = next(line for line in text.splitlines() if row.match(line))
            assert run.report in line, (run.run, line)
