"""Studies with seeds: runs per setting and seed, shared runs, the spread, the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_config

from koala_lib import studies
from koala_lib.studies import StudyRun


def test_a_study_trains_each_setting_from_each_seed_and_shares_identical_runs(ci_data,
                                                                              tmp_path):
    base = small_config(epochs=2, snapshot_images=0, batch_size=8)
    train_indices = ci_data.indices("train")[:16]
    held_out = {"validation": ci_data.indices("val")[:6], "test": ci_data.indices("test")[:6]}
    settings = {"lr 1e-3": {}, "zeroed": {"embeddings": "zeroed"},
                "zoom": {"max_zoom": 1.5, "weight_decay": 0.01}}
    runs = studies.run_study(ci_data, settings, base, (1, 2), tmp_path, train_indices,
                             held_out, progress=False)
    assert [(run.setting, run.seed) for run in runs] == [
        (name, seed) for name in settings for seed in (1, 2)]
    assert len({run.run_dir for run in runs}) == 6
    for run in runs:
        assert len(run.curve("val_loss")) == 2  # epochs 1 and 2 (epoch 0 left out)
        assert np.isfinite(run.curve("train_subset_loss")).all()
        assert set(run.scores) == {"validation", "test"}
        assert run.scores["test"]["images"] == 6
        # One checkpoint, written after the last epoch; no TensorBoard log.
        assert [path.name for path in run.run_dir.glob("checkpoint*.keras")] == [
            "checkpoint-epoch002.keras"]
        assert not (run.run_dir / "tensorboard").exists()
    by_seed = {run.seed: run.final("val_loss") for run in runs if run.setting == "lr 1e-3"}
    assert by_seed[1] != by_seed[2]  # seeds make different runs
    # The same training under another name is the same run: read back, not trained again.
    again = studies.run_study(ci_data, {"real embeddings": {"embeddings": "real",
                                                            "learning_rate": 1e-3}}, base, (1,),
                              tmp_path, train_indices, held_out, score=False,
                              keep_models=True, progress=False)
    assert again[0].run_dir == runs[0].run_dir and again[0].scores == {}
    assert again[0].history == runs[0].history and again[0].model is not None
    # Scored on other images: the same model's scores, measured there; the history kept.
    other = {"other": held_out["test"]}
    scored = studies.scored_on(again, ci_data, other)
    assert scored[0].history == again[0].history and again[0].scores == {}
    assert scored[0].scores["other"]["psnr"] == pytest.approx(runs[0].scores["test"]["psnr"])
    with pytest.raises(ValueError, match="keep_models=True"):
        studies.scored_on(runs[:1], ci_data, other)
    rows = studies.seed_table(runs, {**studies.RUN_VALUES, **studies.score_values("test")})
    assert [row["setting"] for row in rows] == list(settings)
    assert rows[0]["seeds"] == 2 and "test PSNR (dB)" in rows[0]


def _run(setting, seed, val, train):
    history = [{"epoch": 0, "val_loss": 9.0}] + [
        {"epoch": e + 1, "val_loss": v, "train_subset_loss": t}
        for e, (v, t) in enumerate(zip(val, train, strict=True))]
    return StudyRun(setting, seed, None, history)


def test_the_seed_table_gives_mean_and_standard_deviation_per_setting():
    runs = [_run("a", 1, [2.0, 1.0], [1.5, 0.5]), _run("a", 2, [2.0, 3.0], [1.5, 2.0]),
            _run("b", 1, [2.0, 5.0], [1.0, 4.0])]
    rows = studies.seed_table(runs, lr={"a": 0.1, "b": 0.2})
    a, b = rows
    assert (a["setting"], a["lr"], a["seeds"], b["seeds"]) == ("a", 0.1, 2, 1)
    assert a["held-out loss mean"] == pytest.approx(2.0)
    assert a["held-out loss sd"] == pytest.approx(np.std([1.0, 3.0], ddof=1))
    assert a["gap mean"] == pytest.approx(np.mean([0.5, 1.0]))
    assert a["held-out loss"] == "2 ± 1.4"
    assert np.isnan(b["held-out loss sd"]) and b["held-out loss"] == "5"
    # The same cells as a table of replicates that are not runs.
    by_replicate, _ = studies.replicate_table({"a": {1: 1.0, 2: 3.0}, "b": {1: 5.0}},
                                              "held-out loss")
    assert by_replicate == {key: value for key, value in a.items()
                            if key in ("setting", "seeds") or key.startswith("held-out loss")}


def test_a_replicate_table_tabulates_clips_for_a_paired_verdict():
    from scipy import stats

    from koala_lib.verdicts import difference_verdict

    flicker = {"no smoothing": {"clip 1": 3.0, "clip 2": 4.0, "clip 3": 5.5},
               "smoothing 0.5": {"clip 1": 1.0, "clip 2": 1.5, "clip 3": 2.5}}
    rows = studies.replicate_table(flicker, "flicker", count="clips")
    raw, smoothed = rows
    assert list(raw) == ["setting", "clips", "flicker", "flicker mean", "flicker sd",
                         "flicker by seed"]
    assert (raw["setting"], raw["clips"]) == ("no smoothing", 3)
    assert raw["flicker mean"] == pytest.approx(12.5 / 3)
    assert raw["flicker sd"] == pytest.approx(np.std([3.0, 4.0, 5.5], ddof=1))
    assert raw["flicker"] == "4.167 ± 1.3"
    assert smoothed["flicker by seed"] == flicker["smoothing 0.5"]
    verdict = difference_verdict(rows, "flicker", unit="clips")
    assert (verdict["test"], verdict["replicates"], verdict["unit"]) == (
        "paired t-test", 3, "clips")
    assert verdict["compared"] == "smoothing 0.5 vs no smoothing"
    assert verdict["p"] == pytest.approx(stats.ttest_rel([1.0, 1.5, 2.5], [3.0, 4.0, 5.5]).pvalue)
    assert "paired over 3 clips" in verdict["verdict"]
    with pytest.raises(ValueError, match="no replicates for \\['none'\\]"):
        studies.replicate_table({"none": {}}, "flicker")


def test_a_fixed_row_reads_a_prediction_that_needs_no_training():
    row = studies.fixed_row("gray", {"scenes": {"psnr": 20.5}},
                            studies.score_values("scenes", ("psnr",)))
    assert row["seeds"] == "-" and row["scenes PSNR (dB) mean"] == 20.5
    assert row["scenes PSNR (dB)"] == "20.5"


def test_over_fitting_is_a_held_out_loss_that_rises_while_training_falls():
    steady = _run("a", 1, [3.0, 2.0, 1.5], [2.5, 1.5, 1.0])
    gap_only = _run("a", 2, [3.0, 2.5, 2.4], [1.0, 0.8, 0.5])  # a gap, not over-fitting
    over = _run("a", 3, [3.0, 2.0, 2.6], [2.5, 1.5, 1.0])
    assert studies.overfitting_verdict([steady, gap_only])["verdict"] == (
        "not observed at this budget")
    found = studies.overfitting_verdict([steady, gap_only, over])
    assert found["verdict"] == "observed"
    assert found["measured"].startswith("1 of 3 runs over-fit within 3 epochs")
    short = _run("a", 1, [3.0, 2.0], [2.5, 1.5])
    assert studies.overfitting_verdict([short])["verdict"] == "cannot tell"


def test_run_names_come_from_what_a_setting_changes():
    assert studies.run_name({}, 1) == "base_seed1"
    assert studies.run_name({"learning_rate": 1e-4, "clipnorm": None}, 2) == (
        "clipnorm-None_learning_rate-0.0001_seed2")
