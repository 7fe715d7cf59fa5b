"""The gpu profile fits a free Colab session and the Drive quota, by koala_lib.budget."""

from __future__ import annotations

from dataclasses import replace

from koala_lib import budget, course

GPU = course.SETTINGS["gpu"]


def test_the_gpu_profile_fits_a_free_colab_session_and_the_drive_quota(capsys):
    costs = budget.notebook_costs(GPU)
    with capsys.disabled():  # the numbers, in make test's output
        print("\n" + budget.table(GPU).split("\n\n| rate")[0])
    assert list(costs) == list(budget.NOTEBOOKS)
    over = {name: round(cost.total_s / 60, 1) for name, cost in costs.items()
            if cost.total_s > budget.NOTEBOOK_BUDGET_S}
    assert not over, f"over {budget.NOTEBOOK_BUDGET_S / 60:.0f} minutes on a T4: {over}"
    assert sum(cost.total_s for cost in costs.values()) <= budget.COURSE_BUDGET_S
    assert sum(cost.total_bytes for cost in costs.values()) <= budget.DRIVE_BUDGET_BYTES


def test_every_rate_says_whether_it_was_measured_or_assumed():
    for name, rate in budget.RATES.items():
        assert rate.value > 0 and rate.source.startswith(("measured", "assumed")), name


def test_the_estimate_follows_the_settings():
    def minutes(settings, notebook):
        return budget.notebook_costs(settings)[notebook].total_s

    assert minutes(replace(GPU, epochs=2 * GPU.epochs), "06_training_on_gpu") > minutes(
        GPU, "06_training_on_gpu")
    assert minutes(replace(GPU, lfw=False), "09_beyond_the_report") < minutes(
        GPU, "09_beyond_the_report")
    assert minutes(replace(GPU, study_seeds=3), "10_beyond_the_report_part2") > minutes(
        GPU, "10_beyond_the_report_part2")
    # The whole of LFW does not fit one notebook's budget: why the gpu profile takes part.
    everyone = replace(GPU, lfw_min_faces=0)
    assert minutes(everyone, "09_beyond_the_report") > budget.NOTEBOOK_BUDGET_S


def test_07s_more_epochs_train_beyond_06s_run():
    for settings in course.SETTINGS.values():
        assert settings.curve_epochs > settings.epochs, settings.profile


def test_a_notebook_prints_its_t4_estimate_at_setup(capsys, monkeypatch):
    monkeypatch.setenv("KOALA_PROFILE", "ci")
    course.setup(portraits=False, notebook="06_training_on_gpu")
    printed = capsys.readouterr().out
    assert "On a free Colab T4 (gpu profile) this notebook takes about" in printed


def test_07s_replicated_table1_runs_are_counted_once_each():
    from koala_lib import experiments

    per_seed = sum(spec.batch * spec.updates for spec in experiments.TABLE1
                   if spec.run in experiments.REPLICATED)
    assert budget.TABLE1_REPLICATED_IMAGES == len(experiments.REPLICATE_SEEDS) * per_seed
