"""The report's Table 1, measured (notebook 07 builds section 4.3 from ``train`` and
``evaluate``).

**Table 1** lists four runs as (batch, steps, epochs): 4000/10/1, 100/10/1, 10/100/2 and
100/10/3, judged by eye ("grayish", "brownish/reddish"). :func:`run_table1` runs them with
the report's loss and Adam at lr 0.001 (with the gradient norm clipped at 1, see
:mod:`koala_lib.train`), where "steps" is the number of updates an epoch, so a run makes
steps x epochs updates of one batch each. It measures every run on held-out persons
(:mod:`koala_lib.metrics`) beside two baselines that need no training.

**Batches larger than the training set.** The report had about 4,000 frames; our training
split has about 1,700 portraits. A batch of 4000 takes the next 4000 images of the
feeder's stream (:mod:`koala_lib.data.feeder`): the whole shuffled training set, then the next
shuffle, and so on, so each portrait appears two or three times in the batch, each copy
flipped or not at random. It is computed as micro-batches whose gradients are averaged
before the single Adam update (``max_micro_batch``), which is the same update as one batch
of 4000 but fits in memory.

With ``batch_scale`` < 1 (the ``ci`` and ``cpu`` profiles) every batch is multiplied by it
(at least 1 image): the same four runs, smaller; the table says so in its "batch as run"
column.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from koala_lib.data.portraits import PortraitData
from koala_lib.evaluate import (
    PredictedAB,
    baselines,
    constant_loss,
    mean_ab,
    measure,
    summary_row,
    table_markdown,
)
from koala_lib.train import TrainConfig, train


@dataclass(frozen=True)
class Table1Run:
    run: int
    batch: int
    steps: int  # updates an epoch
    epochs: int
    report: str  # the report's comment on the run, quoted (judged by eye)

    @property
    def updates(self) -> int:
        return self.steps * self.epochs


TABLE1 = (
    Table1Run(1, 4000, 10, 1,
              "No colourization of images as seen. The input images was more grayish"),
    Table1Run(2, 100, 10, 1, "Brownish/Reddish image output"),
    Table1Run(3, 10, 100, 2, "Brownish/Reddish image output"),
    Table1Run(4, 100, 10, 3, "No significant difference was measured"),
)


@dataclass
class Table1Result:
    rows: list[dict]
    indices: np.ndarray  # the held-out images measured
    predictions: dict[str, np.ndarray]  # run name -> scaled a,b (arrays or PredictedAB)
    per_image: dict[str, dict]
    histories: dict[str, list[dict]]


def run_table1(data: PortraitData, run_root, base: TrainConfig, batch_scale: float = 1.0,
               max_micro_batch: int | None = 100, eval_split: str = "test",
               runs=TABLE1, verbose="auto") -> Table1Result:
    """Train the four Table 1 runs (resuming finished ones) and measure them with baselines."""
    run_root = Path(run_root)
    indices = data.indices(eval_split)
    train_indices = data.indices("train")
    rows, predictions, per_image, histories = [], {}, {}, {}

    def add(name, predicted, train_loss, **extra):
        images, summary = measure(data, indices, predicted)
        predictions[name], per_image[name] = predicted, images
        rows.append(summary_row(summary, run=name, **extra, **{"train loss": train_loss}))

    train_mean = mean_ab(data, train_indices)
    for name, (predicted, constant) in baselines(len(indices), data.image_size,
                                                 train_mean).items():
        add(f"baseline: {name}", predicted, constant_loss(data, train_indices, constant),
            batch="-", steps="-", epochs="-", updates=0,
            **{"batch as run": "no training", "report": "-", "seconds": 0.0})

    for spec in runs:
        batch = max(1, round(spec.batch * batch_scale))
        config = replace(base, batch_size=batch, steps_per_epoch=spec.steps, epochs=spec.epochs,
                         max_micro_batch=max_micro_batch)
        repeats = batch / len(train_indices)
        how = f"{batch}" + (f" (x{batch_scale:g} of {spec.batch})" if batch != spec.batch else "")
        if repeats > 1:
            how += f": each of the {len(train_indices)} training images {repeats:.1f} times"
        start = time.perf_counter()
        result = train(data, config, run_root / f"table1_run{spec.run}", verbose=verbose)
        seconds = time.perf_counter() - start
        name = f"run {spec.run}: {spec.batch}/{spec.steps}/{spec.epochs}"
        histories[name] = result.history
        add(name, PredictedAB(result.model, data, indices), result.history[-1]["loss"],
            batch=spec.batch, steps=spec.steps, epochs=spec.epochs, updates=spec.updates,
            **{"batch as run": how, "report": f'"{spec.report}"', "seconds": seconds})
    return Table1Result(rows, indices, predictions, per_image, histories)


TABLE_COLUMNS = ("run", "batch as run", "updates", "train loss", "held-out loss", "PSNR (dB)",
                 "SSIM", "colourfulness gap", "faces", "background", "measured", "report")


def write_table(rows, path_stem, note: str = "") -> tuple[Path, Path]:
    """``path_stem``.md (with ``note`` under the table) and ``path_stem``.csv (every column)."""
    path_stem = Path(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    markdown = path_stem.with_suffix(".md")
    text = table_markdown(rows, TABLE_COLUMNS) + ("\n\n" + note if note else "")
    markdown.write_text(text + "\n")
    table = path_stem.with_suffix(".csv")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return markdown, table
