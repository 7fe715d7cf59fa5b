"""scripts/commit_outputs.py: `make notebooks` copies a real run's outputs into notebooks/."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("commit_outputs",
                                              ROOT / "scripts" / "commit_outputs.py")
commit_outputs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(commit_outputs)


def test_terminal_text_applies_carriage_returns_and_backspaces_as_jupyter_shows_them():
    assert commit_outputs.terminal_text("10%\r55%\r100%\n") == "100%\n"
    assert commit_outputs.terminal_text("epoch 1\b2\n") == "epoch 2\n"
    assert commit_outputs.terminal_text("a\r\nb\r\r\n") == "a\nb\n"  # Windows line ends kept
    assert commit_outputs.terminal_text("done 100%\r") == "done 100%"  # nothing after it


def stream(text, name="stdout"):
    return {"name": name, "output_type": "stream", "text": text}


def test_a_progress_bar_becomes_its_last_state_and_tensorflow_start_up_lines_go():
    outputs = [stream("Epoch 1/2\n"), stream("\r 1/55 ━"), stream("\b\b\b\r55/55 ━━ loss: 0.1\n"),
               stream("I0000 00:00:1795835685.630181    8158 port.cc:153] oneDNN custom "
                      "operations are on.\nWARNING: All log messages before "
                      "absl::InitializeLog() is called are written to STDERR\n", "stderr"),
               {"output_type": "display_data", "data": {"text/plain": "figure"}},
               stream("a real warning\n", "stderr")]
    tidy = commit_outputs.tidy_streams(outputs)
    assert tidy[0]["text"] == ["Epoch 1/2\n", "55/55 ━━ loss: 0.1\n"]
    assert [output["output_type"] for output in tidy] == ["stream", "display_data", "stream"]
    assert tidy[2]["text"] == ["a real warning\n"]


def notebook(code: str, markdown: str, outputs=()) -> dict:
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": [markdown]},
                      {"cell_type": "code", "metadata": {}, "source": [code],
                       "outputs": list(outputs), "execution_count": 1}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_outputs_are_copied_keeping_edited_prose_and_refused_when_code_changed(tmp_path):
    executed, course = tmp_path / "ran.ipynb", tmp_path / "01_x.ipynb"
    executed.write_text(json.dumps(notebook("print(1)", "old prose", [stream("1\n")])))
    course.write_text(json.dumps(notebook("print(1)", "prose edited since")))
    commit_outputs.copy_outputs(executed, course)
    copied = json.loads(course.read_text())
    assert copied["cells"][1]["outputs"] == [stream(["1\n"])]
    assert copied["cells"][0]["source"] == ["prose edited since"]
    course.write_text(json.dumps(notebook("print(2)", "prose")))
    with pytest.raises(SystemExit, match="code changed"):
        commit_outputs.copy_outputs(executed, course)
    assert json.loads(course.read_text())["cells"][1]["outputs"] == []  # left as it was
