"""Tests over replicates: paired or Welch over seeds, screens named, the test and the
replicate count carried with every verdict."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import ROOT
from scipy import stats

from koala_lib import verdicts


def rows_of(**by_setting):
    """Rows as :func:`koala_lib.studies.seed_table` gives them: {setting: {seed: value}}."""
    return [{"setting": name, "held-out loss": f"{np.mean(list(found.values())):.4g}",
             "held-out loss mean": float(np.mean(list(found.values()))),
             "held-out loss by seed": found} for name, found in by_setting.items()]


def test_a_difference_counts_when_a_paired_test_over_the_seeds_finds_it():
    # x is lower than y by about 1 on every seed: paired, the difference is clear.
    rows = rows_of(x={1: 1.0, 2: 2.0, 3: 3.0}, y={1: 2.1, 2: 2.9, 3: 4.0},
                   z={1: 5.0, 2: 1.5, 3: 3.0})
    clear = verdicts.difference_verdict(rows, "held-out loss", between=("y", "x"))
    assert clear["compared"] == "x vs y" and clear["verdict"].startswith("x is better")
    assert clear["p"] == pytest.approx(stats.ttest_rel([1, 2, 3], [2.1, 2.9, 4.0]).pvalue)
    assert "paired over 3 seeds" in clear["verdict"]
    assert (clear["test"], clear["replicates"], clear["unit"]) == ("paired t-test", 3, "seeds")
    # The same means with differences that disagree between seeds: not detected.
    noisy = verdicts.difference_verdict(rows, "held-out loss", between=("x", "z"))
    assert noisy["verdict"].startswith("no difference detected")
    higher = verdicts.difference_verdict(rows, "held-out loss", lower_is_better=False,
                                         between=("x", "y"))
    assert higher["verdict"].startswith("y is better")


def test_the_best_two_of_several_are_a_screen_not_a_test():
    rows = rows_of(x={1: 1.0, 2: 2.0, 3: 3.0}, y={1: 2.1, 2: 2.9, 3: 4.0},
                   z={1: 5.0, 2: 4.5, 3: 6.0})
    screen = verdicts.difference_verdict(rows, "held-out loss")
    assert screen["compared"] == "x vs y" and screen["verdict"].startswith("screen: x is")
    # Two settings named before looking, or the only two there are: a test.
    assert not verdicts.difference_verdict(rows[:2], "held-out loss")["verdict"].startswith(
        "screen")


def test_other_seeds_take_welch_and_one_seed_takes_no_test():
    welch = rows_of(x={1: 1.0, 2: 1.1}, w={5: 3.0, 6: 3.1})
    found = verdicts.difference_verdict(welch, "held-out loss")
    assert "Welch" in found["verdict"] and found["test"] == "Welch t-test"
    single = verdicts.difference_verdict(rows_of(x={1: 1.0}, y={1: 2.0}), "held-out loss")
    assert single["verdict"] == "one seed: no test possible" and single["test"] == "none"
    assert np.isnan(single["p"])


def test_replicates_other_than_seeds_are_named():
    rows = rows_of(raw={0: 0.10, 1: 0.12}, smooth={0: 0.05, 1: 0.06})
    found = verdicts.difference_verdict(rows, "held-out loss", unit="clips")
    assert "paired over 2 clips" in found["verdict"] and found["unit"] == "clips"


def test_a_named_setting_must_exist_and_two_are_needed():
    rows = rows_of(x={1: 1.0, 2: 2.0}, y={1: 2.0, 2: 3.0})
    with pytest.raises(ValueError, match="no setting"):
        verdicts.difference_verdict(rows, "held-out loss", between=("x", "w"))
    with pytest.raises(ValueError, match="two settings"):
        verdicts.difference_verdict(rows[:1], "held-out loss")


def test_the_multiplicity_note_counts_the_tests_and_the_chance_passes():
    rows = rows_of(x={1: 1.0, 2: 2.0, 3: 3.0}, y={1: 2.1, 2: 2.9, 3: 4.0},
                   z={1: 5.0, 2: 4.5, 3: 6.0})
    found = [verdicts.difference_verdict(rows, "held-out loss"),
             verdicts.difference_verdict(rows, "held-out loss", between=("x", "z")),
             verdicts.difference_verdict(rows_of(a={1: 1.0}, b={1: 2.0}), "held-out loss")]
    note = verdicts.multiplicity_note(found)
    assert note.startswith("2 tests at p < 0.05, uncorrected")
    assert "about 0.1 would pass by chance" in note and "1 of them a screen" in note
    assert verdicts.multiplicity_note(found[2:]).startswith("No tests: one replicate each")


def committed(name: str) -> list[dict]:
    with (ROOT / "figures" / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_committed_verdicts_name_their_test_and_rest_on_replicates_not_portraits():
    # Table 1 (notebook 07): colour words describe one run; run 4's test is over seeds.
    runs = [row for row in committed("07_table1.csv") if row["run"].startswith("run ")]
    assert len(runs) == 4 and all(row["test"] and row["verdict"] for row in runs)
    assert [int(row["replicates"]) for row in runs[:3]] == [1, 1, 1]
    assert runs[3]["test"] == "paired t-test" and int(runs[3]["replicates"]) >= 2
    # Notebook 10: every t-test over at least two seeds (clips for the video's smoothing).
    found = committed("10_verdicts.csv")
    assert len(found) == 11
    for row in found:
        assert row["test"] and int(row["replicates"]) >= 1, row
        if "t-test" in row["test"]:
            assert int(row["replicates"]) >= 2 and row["unit"] in ("seeds", "clips"), row
