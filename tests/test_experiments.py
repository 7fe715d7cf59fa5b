"""The Table 1 runner."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from conftest import ROOT, small_config

from koala_lib import experiments


def test_table1_runner_fills_every_column(ci_data, tmp_path):
    base = small_config(snapshot_images=0)
    runs = (experiments.Table1Run(1, 40, 2, 1, "more grayish"),
            experiments.Table1Run(2, 4, 3, 2, "Brownish"))
    result = experiments.run_table1(ci_data, tmp_path, base, batch_scale=0.5,
                                    max_micro_batch=8, runs=runs, verbose=0, seeds=(7, 8))
    assert [row["run"] for row in result.rows] == [
        "baseline: gray (a = b = 0)", "baseline: training mean a,b",
        "baseline: per-pixel training mean a,b", "run 1: 40/2/1", "run 2: 4/3/2"]
    for row in result.rows:
        for column in experiments.TABLE_COLUMNS:
            assert row[column] not in (None, ""), (row["run"], column)
            if isinstance(row[column], float):
                assert np.isfinite(row[column]), (row["run"], column)
    gray, mean, per_pixel = result.rows[:3]
    assert gray["mean chroma"] < 0.5 and gray["measured"].startswith("grayish")
    # The mean a,b of every position fits the training images at least as well as one mean.
    assert per_pixel["train loss"] <= mean["train loss"] < gray["train loss"]
    assert gray["ΔE00"] > 0
    assert "20 (x0.5 of 40)" in result.rows[3]["batch as run"]
    assert [row["report"] for row in result.rows[3:]] == ['"more grayish"', '"Brownish"']
    assert result.rows[3]["updates"] == 2 and result.rows[4]["updates"] == 6
    # Run 2 (a replicated run) trained from the base seed and two more; run 1 once.
    assert (result.rows[3]["seeds"], result.rows[4]["seeds"]) == (1, 3)
    losses = result.rows[4]["held-out loss by seed"]
    assert sorted(losses) == sorted({base.seed, 7, 8}) and len(set(losses.values())) == 3
    assert losses[base.seed] == result.rows[4]["held-out loss"]
    spread = np.array(list(losses.values()))
    assert result.rows[4]["held-out loss, all seeds"] == (
        f"{spread.mean():.4g} ± {spread.std(ddof=1):.2g} (3 seeds)")
    assert result.rows[3]["held-out loss, all seeds"] == "one seed"
    assert [row["replicates"] for row in result.rows[3:]] == [1, 1]  # colour words, one run
    assert [verdict["run"] for verdict in result.verdicts] == ["run 1: 40/2/1", "run 2: 4/3/2"]
    markdown, table = experiments.write_table(result.rows, tmp_path / "table1")
    assert len(markdown.read_text().splitlines()) == 2 + 5  # header, rule, five rows
    assert len(table.read_text().splitlines()) == 1 + 5


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


def fake_table1(measured: dict, run4_by_seed, run2_by_seed) -> experiments.Table1Result:
    """Table 1 rows with the given {run: (faces, background, verdict)} words, and the
    held-out loss of runs 2 and 4 by seed ({seed: loss})."""
    rows = [{"run": "baseline: gray (a = b = 0)", "report": "-", "measured": "grayish"}]
    by_seed = {}
    for spec in experiments.TABLE1:
        name = f"run {spec.run}: {spec.batch}/{spec.steps}/{spec.epochs}"
        losses = {4: run4_by_seed, 2: run2_by_seed}.get(spec.run, {42: 0.01})
        faces, background, verdict = measured[spec.run]
        rows.append({"run": name, "report": f'"{spec.report}"', "measured": verdict,
                     "faces": f"{faces}: 10 deg", "background": f"{background}: 250 deg",
                     "held-out loss": losses[min(losses)]})
        by_seed[name] = dict(losses)
    return experiments.Table1Result(rows, np.arange(50), {}, {}, {}, by_seed)


def test_report_verdicts_compare_each_comment_with_its_measurement():
    run2 = {42: 0.0100, 43: 0.0130, 44: 0.0090}
    same = {42: 0.0101, 43: 0.0127, 44: 0.0092}  # seed to seed as run 2: no real difference
    measured = {1: ("grayish purple/mauve", "gray", "grayish"),
                2: ("pink/red", "brown/orange (muted)", "brownish/reddish"),
                3: ("green", "blue", "green faces, blue background"),
                4: ("gray", "gray", "grayish")}
    verdicts = experiments.report_verdicts(fake_table1(measured, same, run2))
    assert [v["verdict"] for v in verdicts] == [
        "holds", "holds", "does not hold", "consistent: no difference detected over 3 seeds"]
    assert "green faces" in verdicts[2]["measured"]
    assert [(v["test"], v["replicates"]) for v in verdicts] == [
        ("colour words of one run", 1)] * 3 + [("paired t-test", 3)]
    assert "no difference detected" in verdicts[3]["measured"]
    better = {seed: loss * 0.5 for seed, loss in run2.items()}  # halved from every seed
    verdicts = experiments.report_verdicts(fake_table1(measured, better, run2))
    assert verdicts[3]["verdict"] == "does not hold"
    assert "run 4 is better" in verdicts[3]["measured"]


def test_run_4_against_run_2_is_untested_with_one_training_run_each():
    # However many portraits measured them, two models of one seed each test no choice.
    measured = {run: ("gray", "gray", "grayish") for run in (1, 2, 3, 4)}
    verdicts = experiments.report_verdicts(fake_table1(measured, {42: 0.005}, {42: 0.008}))
    assert verdicts[3]["verdict"] == "untested"
    assert (verdicts[3]["test"], verdicts[3]["replicates"]) == ("none (one seed)", 1)
    assert "run 4 0.0050, run 2 0.0080" in verdicts[3]["measured"]


def test_a_comment_true_of_one_region_partly_holds():
    run2 = {42: 0.01}
    measured = {1: ("grayish green", "blue (muted)", "grayish green faces, blue (muted) "
                    "background"),
                2: ("grayish pink/red", "blue", "grayish pink/red faces, blue background"),
                3: ("gray", "blue", "gray faces, blue background"),
                4: ("gray", "gray", "grayish")}
    verdicts = experiments.report_verdicts(fake_table1(measured, run2, run2))
    assert [v["verdict"] for v in verdicts[:3]] == ["partly holds", "partly holds",
                                                     "does not hold"]


def test_epochs_verdict_compares_the_first_and_the_last_epoch_up_to_ten():
    falling = [{"epoch": e, "val_loss": 0.1 / (1 + e)} for e in range(0, 16)]
    verdict = experiments.epochs_verdict(falling)
    assert verdict["verdict"] == "does not hold" and "after epoch 10" in verdict["measured"]
    assert verdict["replicates"] == 1
    # A low epoch in the middle is chosen after looking: the last epoch decides.
    dip = [{"epoch": 0, "val_loss": 0.5}] + [{"epoch": e, "val_loss": 0.02} for e in
                                             range(1, 11)]
    dip[5]["val_loss"] = 0.01
    assert experiments.epochs_verdict(dip)["verdict"] == "holds"
    flat = [{"epoch": 0, "val_loss": 0.5}] + [{"epoch": e, "val_loss": 0.02 - 1e-5 * e}
                                              for e in range(1, 5)]
    verdict = experiments.epochs_verdict(flat)
    assert verdict["verdict"] == "holds" and "epochs 1-4 (of the report's 10)" in verdict[
        "measured"]


def test_overfit_verdict_holds_only_when_the_loss_stalls():
    falling = [{"epoch": e, "val_loss": 0.1 * 0.7 ** e} for e in range(0, 11)]
    assert experiments.overfit_verdict(falling, 10)["verdict"] == "does not hold"
    stalled = [{"epoch": e, "val_loss": 0.05 if e else 0.1} for e in range(0, 11)]
    verdict = experiments.overfit_verdict(stalled, 10)
    assert verdict["verdict"] == "holds" and "at step 10" in verdict["measured"]
    assert "not falling after step 10" in verdict["measured"]


def test_overfit_verdict_says_where_a_falling_loss_flattens():
    # Falls 30% a recording until step 50, then flat: the claim of a stall after step 4
    # does not hold, and the measurement names where the plateau begins.
    plateau = [{"epoch": e, "val_loss": 0.1 * 0.7 ** min(e, 5)} for e in range(0, 11)]
    verdict = experiments.overfit_verdict(plateau, 10)
    assert verdict["verdict"] == "does not hold"
    assert "falling 1% a recording until step 50" in verdict["measured"]
    falling = [{"epoch": e, "val_loss": 0.1 * 0.7 ** e} for e in range(0, 11)]
    assert "still falling at step 100" in experiments.overfit_verdict(falling, 10)["measured"]


def test_sources_verdict_says_it_tests_another_form():
    def row(trained, source, chroma, images):
        return {"trained on": trained, "tested on": source, "chroma vs truth": chroma,
                "held-out loss": 0.01, "images": images}

    rows = [row("narrow", "us", 0.8, 100), row("narrow", "uk", 0.6, 100),
            row("diverse", "us", 0.5, 100), row("diverse", "uk", 0.5, 100)]
    verdict = experiments.sources_verdict(rows)
    # Half the truth's chroma is visible colour: "no visible change" does not hold against
    # gray, while the diverse model does colour less than the narrow one.
    assert verdict["verdict"] == ("tested in another form (one source, not one video): "
                                  "against gray does not hold; less colour than the narrow "
                                  "set holds")
    assert "50% of the truth's trained on diverse, 70% on narrow" in verdict["measured"]
    faint = [row("narrow", "us", 0.8, 100), row("diverse", "us", 0.1, 100)]
    assert "against gray holds" in experiments.sources_verdict(faint)["verdict"]


def test_verdicts_without_enough_numbers_say_so_instead_of_crashing():
    with pytest.raises(ValueError, match="at least two epochs"):
        experiments.epochs_verdict([{"epoch": 0, "val_loss": 0.1}])
    later = [{"epoch": e, "val_loss": 0.1 / e} for e in (2, 3, 4)]  # epoch 1 not recorded
    assert "epochs 2-4" in experiments.epochs_verdict(later)["measured"]
    with pytest.raises(ValueError, match="two or more steps"):
        experiments.overfit_verdict([{"epoch": 0, "val_loss": 0.1}], 10)
    with pytest.raises(ValueError, match="two training sets"):
        experiments.sources_verdict([])


def test_overfit_runs_reuse_a_model_yet_each_run_is_a_fresh_one():
    from koala_lib.losses import report_mse
    from koala_lib.model import build_colorizer

    rng = np.random.default_rng(0)
    scaled_l = rng.uniform(-1, 1, (16, 16, 1)).astype("float32")
    scaled_ab = rng.uniform(-0.3, 0.3, (16, 16, 2)).astype("float32")
    embedding = rng.normal(0, 3, 10).astype("float32")
    optimisers = {"fast": {"learning_rate": 1e-3, "clipnorm": None},
                  "slow": {"learning_rate": 1e-4, "clipnorm": None}}
    runs = experiments.overfit_runs(scaled_l, scaled_ab, embedding, steps=4, seeds=(1, 2),
                              optimisers=optimisers, fusions=(True,))
    assert [(run.optimiser, run.seed) for run in runs] == [
        ("fast", 1), ("fast", 2), ("slow", 1), ("slow", 2)]
    # The last run trained the model (and Adam) that three runs used before it: it is the
    # same as a newly built and compiled model all the same.
    keras.utils.set_random_seed(2)
    fresh = build_colorizer(16, 10)
    fresh.compile(keras.optimizers.Adam(1e-4), loss=report_mse)
    x = [scaled_l[None], embedding[None]]
    losses = [fresh.train_on_batch(x, scaled_ab[None]) for _ in range(4)]
    np.testing.assert_allclose(runs[-1].losses, losses, rtol=1e-6)
    prediction = keras.ops.convert_to_numpy(fresh(x))[0]
    np.testing.assert_allclose(runs[-1].prediction, prediction, atol=1e-6)
    summary = experiments.overfit_summary(runs)
    assert [(row["optimiser"], row["logits"], row["seeds"]) for row in summary] == [
        ("fast", "standardised", 2), ("slow", "standardised", 2)]
    assert summary[1]["best loss"] == np.median([run.losses.min() for run in runs[2:]])


def test_an_overfit_run_tells_a_spike_a_saturated_output_and_a_stall():
    run = experiments.OverfitRun
    falling = run("a", True, 0, np.geomspace(0.1, 0.001, 50), np.zeros((4, 4, 2)))
    stuck = run("a", True, 0, np.r_[0.3, np.full(49, 0.99)], np.ones((4, 4, 2)))
    assert not falling.spiked and falling.saturated == 0 and falling.stopped_improving is None
    assert stuck.spiked and stuck.saturated == 1 and stuck.stopped_improving == 1
