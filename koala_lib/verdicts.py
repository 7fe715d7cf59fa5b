"""Whether two settings differ: tests over replicates, and what many tests at once mean.

A training choice (a learning rate, more epochs, an ablation) is replicated by training
runs, one a seed: the portraits one trained model is measured on show how that network
errs, not whether another setting would train a different one. :func:`difference_verdict`
compares two settings over their replicates, named with the test and the replicate count;
:func:`multiplicity_note` says what several such tests mean together;
:func:`replicate_columns` makes the cells of a row it reads (the mean, the spread, each
replicate's value), for seeds and clips alike.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

SIGNIFICANCE = 0.05  # the p-value below which a t-test counts a difference


def difference_verdict(rows: list[dict], column: str, lower_is_better: bool = True,
                       between: tuple[str, str] | None = None, unit: str = "seeds") -> dict:
    """Two settings compared by ``column``: the settings named in ``between``, or else the
    best and the runner-up by their means. Among more than two, that pair was chosen after
    looking, so its verdict starts "screen:": the p-value of a pair picked for its gap is
    too small, and a screen's winner needs a new test on runs not used to pick it.

    The same seed gives the same initial weights and batches in every setting, so when both
    ran from the same seeds the runs are *paired*: a paired t-test on the per-seed
    differences (scipy's ``ttest_rel``); otherwise Welch's t-test. The difference counts
    when p < :data:`SIGNIFICANCE`. With 2 seeds (1 degree of freedom) that needs the
    per-seed differences to agree closely: a test with few seeds misses real differences
    more often than it finds false ones, so "no difference detected" is not "no
    difference". The t-tests assume the per-seed values (or differences) are normal, which
    two or three seeds cannot check.

    ``unit``: what a replicate is, "seeds" (a training run each: the replicate of a
    training choice) or, for a choice made after training, e.g. "clips". The result names
    the ``test`` and its number of ``replicates`` beside the verdict."""
    if len(rows) < 2:
        raise ValueError("a difference needs at least two settings.")
    if between is None:
        pair = sorted(rows, key=lambda row: row[f"{column} mean"])[:: 1 if lower_is_better
                                                                    else -1][:2]
    else:
        named = {row["setting"]: row for row in rows}
        missing = [name for name in between if name not in named]
        if missing:
            raise ValueError(f"no setting {missing} among {list(named)}.")
        pair = sorted((named[name] for name in between),
                      key=lambda row: row[f"{column} mean"], reverse=not lower_is_better)
    best, other = pair
    first, second = best[f"{column} by seed"], other[f"{column} by seed"]
    difference = abs(best[f"{column} mean"] - other[f"{column} mean"])
    one = unit[:-1] if unit.endswith("s") else unit
    if set(first) == set(second) and len(first) >= 2:
        seeds = sorted(first)
        differences = np.array([first[seed] - second[seed] for seed in seeds])
        test, replicates, how = "paired t-test", len(seeds), f"paired over {len(seeds)} {unit}"
        if np.ptp(differences) == 0:  # identical differences: no spread at all
            p_value = 1.0 if differences[0] == 0 else 0.0
        else:
            p_value = float(stats.ttest_rel([first[s] for s in seeds],
                                            [second[s] for s in seeds]).pvalue)
    elif min(len(first), len(second)) >= 2:
        test, replicates = "Welch t-test", min(len(first), len(second))
        how = f"Welch, {len(first)} and {len(second)} {unit}"
        p_value = float(stats.ttest_ind(list(first.values()), list(second.values()),
                                        equal_var=False).pvalue)
    else:
        test, replicates, how, p_value = "none", min(len(first), len(second)), "", float("nan")
    if not np.isfinite(p_value):
        verdict = f"one {one}: no test possible"
    elif p_value < SIGNIFICANCE:
        verdict = f"{best['setting']} is better (p = {p_value:.2g}, {how})"
    else:
        verdict = f"no difference detected (p = {p_value:.2g}, {how})"
    if between is None and len(rows) > 2:
        verdict = f"screen: {verdict}"
    return {"compared": f"{best['setting']} vs {other['setting']}", "by": column,
            "measured": f"{best[column]} vs {other[column]} (difference {difference:.3g})",
            "verdict": verdict, "p": p_value, "test": test, "replicates": replicates,
            "unit": unit}


def multiplicity_note(verdicts: list[dict]) -> str:
    """What several tests at once mean: how many were run, and how many differences
    :data:`SIGNIFICANCE` lets through by chance alone if none were real (no correction is
    applied, so a single p just under it is weak evidence)."""
    tested = [v for v in verdicts if np.isfinite(v.get("p", float("nan")))]
    if not tested:
        return "No tests: one replicate each, so every verdict describes single runs."
    screens = sum(v["verdict"].startswith("screen:") for v in tested)
    return (f"{len(tested)} tests at p < {SIGNIFICANCE:g}, uncorrected: with no real "
            f"difference anywhere about {len(tested) * SIGNIFICANCE:.1f} would pass by chance"
            + (f"; {screens} of them a screen (a pair chosen after looking)" if screens else "")
            + ".")


def replicate_columns(column: str, by_replicate: dict) -> dict:
    """``column``'s cells of a row from its replicates' values ({replicate: value}): the
    mean, the standard deviation (ddof 1; NaN for one), "mean ± sd" as text, and the values
    ("<column> by seed")."""
    found = {replicate: float(value) for replicate, value in by_replicate.items()}
    values = np.array(list(found.values()), np.float64)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return {column: mean_sd_text(mean, sd), f"{column} mean": mean, f"{column} sd": sd,
            f"{column} by seed": found}


def mean_sd_text(mean: float, sd: float) -> str:
    """A table cell: "mean ± sd", or the mean alone where there is no spread (NaN)."""
    return f"{mean:.4g} ± {sd:.2g}" if np.isfinite(sd) else f"{mean:.4g}"
