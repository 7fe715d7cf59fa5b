from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest
from conftest import ROOT

from koala_lib import records

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_record_results_merges_and_makes_values_plain(tmp_path):
    records.record_results("demo", a=np.float32(1.5), b=np.arange(3))
    path = records.record_results("demo", c=float("nan"), a=2)
    assert path == tmp_path / "build" / "results" / "demo.json"
    assert json.loads(path.read_text()) == {"a": 2, "b": [0, 1, 2], "c": None}
    assert records.load_results("demo")["b"] == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match="run the notebook"):
        records.load_results("never")


def test_every_notebook_records_something():
    assert sorted(records.RECORDED) == [notebook.stem for notebook in NOTEBOOKS]


def test_with_record_appends_one_valid_recording_cell_and_leaves_the_notebook(tmp_path):
    notebook = NOTEBOOKS[0]
    before = notebook.read_bytes()
    copy = nbformat.read(records.with_record(notebook, tmp_path / "a" / "copy.ipynb"),
                         as_version=4)
    nbformat.validate(copy)
    original = nbformat.read(notebook, as_version=4)
    assert copy.cells[:-1] == original.cells
    cell = copy.cells[-1]
    assert cell.cell_type == "code" and cell.id not in {c.id for c in original.cells}
    assert cell.source.startswith("from koala_lib.records import record_results")
    compile(cell.source, "record", "exec")  # the recorded names make a valid call
    assert notebook.read_bytes() == before
