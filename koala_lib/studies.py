"""Studies with seeds: the same training from several seeds, per setting, with the spread
(notebook 10: learning rates and clipping, regularisation, what the classifier adds).

One run is too few to compare settings: two runs of one setting from two seeds can differ
as much as two settings do. :func:`run_study` trains every setting from every seed
(:func:`koala_lib.train.train`, so a finished run is read back, not trained again; each
run keeps one checkpoint, written after its last epoch), records each run's curves with
the training loss measured like the held-out loss (:class:`koala_lib.train.SubsetLoss`:
the generalisation gap per epoch), and scores its final model on named held-out sets
(:func:`koala_lib.evaluate.measure`).
:func:`seed_table` gives, per setting, the mean and the standard deviation over the seeds;
:func:`koala_lib.verdicts.difference_verdict` tests whether two settings differ (a
paired t-test over the seeds, which every setting shares).

A setting is a dict of :class:`~koala_lib.train.TrainConfig` overrides, plus optionally
``"embeddings"``: ``"real"``, ``"zeroed"`` or ``"shuffled"``
(:meth:`koala_lib.data.portraits.PortraitData.with_embeddings`), the ablation of the
classifier's global features, applied in training and in scoring alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from koala_lib.data.portraits import PortraitData
from koala_lib.evaluate import PredictedAB, measure
from koala_lib.train import SubsetLoss, TrainConfig, train
from koala_lib.verdicts import mean_sd_text, replicate_columns

TRAIN_SUBSET = 32  # training images whose loss is measured each epoch, as val_loss is

# What each run records: (column, how it is read from a StudyRun).
RUN_VALUES = {
    "held-out loss": lambda run: run.final("val_loss"),
    "training loss": lambda run: run.final("train_subset_loss"),
    "gap": lambda run: run.final("val_loss") - run.final("train_subset_loss"),
}


@dataclass
class StudyRun:
    setting: str
    seed: int
    run_dir: Path
    history: list[dict]  # train.TrainResult.history: epoch 0 (untrained) first
    scores: dict[str, dict] = field(default_factory=dict)  # held-out set -> measure() summary
    model: object = None  # the trained model, when run_study was asked to keep it

    def curve(self, key: str) -> np.ndarray:
        """``key`` per epoch from 1 (NaN where it was not recorded)."""
        return np.array([row.get(key, np.nan) for row in self.history if row["epoch"] >= 1])

    def final(self, key: str) -> float:
        return float(self.curve(key)[-1])


def run_name(overrides: dict, seed: int) -> str:
    """The run's folder name, from what it changes from the base (not from the setting's
    name), so that the same training in two studies is one run, trained once: {} -> "base_seed1",
    {"learning_rate": 0.0001} -> "learning_rate-0.0001_seed1"."""
    parts = [f"{key}-{value}" for key, value in sorted(overrides.items())]
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", "_".join(parts) or "base") + f"_seed{seed}"


def run_study(data: PortraitData, settings: dict[str, dict], base: TrainConfig, seeds,
              run_root, train_indices, held_out: dict[str, np.ndarray],
              temperature: float | None = None, score: bool = True, keep_models: bool = False,
              progress: bool = True) -> list[StudyRun]:
    """Train each of ``settings`` ({name: overrides}) from each of ``seeds`` on
    ``train_indices``, under ``run_root`` (:func:`run_name`).

    The first of ``held_out`` ({name: indices}) is the runs' validation set (its loss is
    ``val_loss`` each epoch); with ``score``, every one of them scores the final model
    (PSNR, SSIM, colourfulness...; ``temperature``: a classification head's read-out). The
    seed sets the
    weights' initialisation, the batches' order and flips, and the shuffled embeddings'
    derangement."""
    if not settings or not len(seeds):
        raise ValueError("a study needs at least one setting and one seed.")
    if not held_out or any(len(indices) == 0 for indices in held_out.values()):
        raise ValueError(f"every held-out set needs images; got "
                         f"{ {name: len(idx) for name, idx in held_out.items()} }.")
    train_indices = np.asarray(train_indices)
    validation = next(iter(held_out.values()))
    jobs = [(name, seed) for name in settings for seed in seeds]
    bar = _progress(len(jobs), progress)
    runs = []
    for name, seed in jobs:
        # Only what differs from the base names the run ("real" embeddings are the base's).
        overrides = {key: value for key, value in settings[name].items()
                     if (key, value) != ("embeddings", "real")
                     and (key == "embeddings" or getattr(base, key) != value)}
        run_data = data.with_embeddings(overrides.get("embeddings", "real"), seed)
        config = replace(base, seed=int(seed),
                         **{k: v for k, v in overrides.items() if k != "embeddings"})
        result = train(run_data, config, Path(run_root) / run_name(overrides, seed),
                       train_indices, validation,
                       callbacks=[SubsetLoss(run_data, train_indices[:TRAIN_SUBSET])],
                       verbose=0, keep_checkpoints=1, checkpoint_every_epoch=False,
                       tensorboard=False)  # many short runs: one checkpoint each, at the end
        scores = {label: measure(run_data, indices, PredictedAB(
            result.model, run_data, indices, temperature=temperature))[1]
            for label, indices in held_out.items()} if score else {}
        runs.append(StudyRun(name, int(seed), result.run_dir, result.history, scores,
                             result.model if keep_models else None))
        if bar is not None:
            bar.set_postfix_str(f"{name}, seed {seed}: held-out loss "
                                f"{runs[-1].final('val_loss'):.4f}")
            bar.update()
    if bar is not None:
        bar.close()
    return runs


def scored_on(runs: list[StudyRun], data: PortraitData, held_out: dict[str, np.ndarray],
              temperature: float | None = None) -> list[StudyRun]:
    """Copies of ``runs`` (trained with ``keep_models``) scored on other images: ``data``'s
    ``held_out`` sets ({name: indices}), e.g. portrait models on photos of scenes. Their
    training history stays; their scores are the new sets'."""
    if any(run.model is None for run in runs):
        raise ValueError("scoring on other images needs the models: run the study with "
                         "keep_models=True.")
    return [replace(run, scores={name: measure(data, indices, PredictedAB(
        run.model, data, indices, temperature=temperature))[1]
        for name, indices in held_out.items()}) for run in runs]


def _progress(total: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="study runs", unit="run")


def score_values(held_out: str, metrics=("psnr", "ssim", "colourfulness_gap")) -> dict:
    """RUN_VALUES-style readers of the final model's ``metrics`` on the held-out set
    ``held_out``: {"<held_out> PSNR (dB)": reader, ...}."""
    label = {"psnr": "PSNR (dB)", "ssim": "SSIM", "colourfulness_gap": "colourfulness gap",
             "loss": "a,b MSE", "chroma": "mean chroma"}
    return {f"{held_out} {label.get(key, key)}": (lambda run, key=key: run.scores[held_out][key])
            for key in metrics}


def seed_table(runs: list[StudyRun], values: dict | None = None, **columns) -> list[dict]:
    """One row per setting (in the order run): ``columns`` ({column: {setting: value}}, the
    settings' own description), the number of seeds, then for each of ``values`` ({column:
    reader of a StudyRun}, default :data:`RUN_VALUES`) its mean over the seeds, its standard
    deviation ("sd", ddof 1; NaN with one seed), "mean ± sd" as text, and each seed's value
    ("<column> by seed", for paired comparisons)."""
    values = RUN_VALUES if values is None else values
    rows = []
    for setting in dict.fromkeys(run.setting for run in runs):
        chosen = [run for run in runs if run.setting == setting]
        row = {"setting": setting,
               **{column: given[setting] for column, given in columns.items()},
               "seeds": len(chosen)}
        for column, read in values.items():
            row |= replicate_columns(column, {run.seed: read(run) for run in chosen})
        rows.append(row)
    return rows


def replicate_table(values: dict[str, dict], column: str, count: str = "seeds") -> list[dict]:
    """:func:`seed_table`'s rows for replicates that are not training runs (clips, ...):
    ``values`` is {setting: {replicate: value}}; one row per setting with "setting",
    ``count`` (the number of replicates) and ``column``'s mean, sd, "mean ± sd" and
    "<column> by seed" (the replicates, which
    :func:`koala_lib.verdicts.difference_verdict` pairs)."""
    empty = [setting for setting, found in values.items() if not found]
    if empty:
        raise ValueError(f"no replicates for {empty}: every setting needs a value at least.")
    return [{"setting": setting, count: len(found), **replicate_columns(column, found)}
            for setting, found in values.items()]


def fixed_row(setting: str, scores: dict, values: dict) -> dict:
    """A row like :func:`seed_table`'s for a prediction that needs no training (gray
    output): ``values`` read once from ``scores`` ({held-out set: measure() summary}), no
    seeds, no spread."""
    run = StudyRun(setting, 0, None, [], scores)
    row = {"setting": setting, "seeds": "-"}
    for column, read in values.items():
        value = float(read(run))
        row[column] = mean_sd_text(value, np.nan)
        row[f"{column} mean"], row[f"{column} sd"] = value, np.nan
    return row




def overfitting_verdict(runs: list[StudyRun], tolerance: float = 0.02) -> dict:
    """Over-fitting, seen in the curves: the held-out loss ending more than ``tolerance``
    (relative) above its best epoch while the training loss keeps falling. Returns how
    many of ``runs`` show it, with the gap at the last epoch."""
    if not runs:
        raise ValueError("no runs to look at.")
    found = []
    for run in runs:
        held_out, training = run.curve("val_loss"), run.curve("train_subset_loss")
        rising = held_out[-1] > (1 + tolerance) * np.nanmin(held_out)
        falling = len(training) > 1 and training[-1] < np.nanmin(training[:-1])
        found.append(bool(rising and falling))
    gaps = np.array([RUN_VALUES["gap"](run) for run in runs])
    epochs = len(runs[0].curve("val_loss"))
    if epochs < 3:  # a rise needs a best epoch before the last and a fall to compare with
        return {"claim": "no over-fitting (the report)",
                "measured": f"{epochs} epoch(s): too few to see the held-out loss turn",
                "verdict": "cannot tell", "test": "none", "replicates": len(runs)}
    return {"claim": "no over-fitting (the report)",
            "measured": f"{sum(found)} of {len(runs)} runs over-fit within {epochs} epochs; "
                        f"gap (held-out - training loss) at the last epoch "
                        f"{gaps.mean():.3g} ± {gaps.std(ddof=1) if len(gaps) > 1 else 0:.2g}",
            "verdict": "not observed at this budget" if not any(found) else "observed",
            "test": "held-out loss rising while the training loss falls, run by run",
            "replicates": len(runs)}
