"""Evaluating colorizations: predictions, baselines and the metric table, in one place.

Everything here measures under :data:`koala_lib.metrics.PROTOCOL`: the images are cut and
stored exactly as for training (:mod:`koala_lib.data.prepare`: the square crop, L rounded to
8 bits and a,b to integers), the prediction is that stored L plus the predicted a,b, and
the metrics compare 8-bit sRGB images.

* :func:`predict_ab` and :func:`measure`: a model's predictions for images of a
  :class:`~koala_lib.data.PortraitData` and their metrics;
* :func:`baselines`: what needs no training: gray (a = b = 0), the training images'
  mean a,b everywhere and their mean a,b position by position (portraits are framed
  alike, so that map is a "mean colouring");
* :func:`predictions`: the baselines and models' predictions for the same images, by name
  (:func:`against_baselines` compares them with one model's);
* :func:`compare`: several predictions for the same images -> one table
  (:func:`summary_row`, the one mapping from a metric summary to a table row);
* :func:`load_folder` and :func:`evaluate_folder`: the same for any folder of colour photos
  and a saved model, which ``python -m koala_lib evaluate`` prints;
* :class:`HeldOutMetrics`: the held-out metrics after every training epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from koala_lib import color, metrics
from koala_lib.data.cleaning import clean
from koala_lib.data.portraits import PortraitData, prepared_data
from koala_lib.model import predict_scaled_ab
from koala_lib.trainer import colorizer_of

GRAY = "gray (a = b = 0)"
TRAIN_MEAN = "training mean a,b"
PER_PIXEL_MEAN = "per-pixel training mean a,b"
TRAINED = "trained model"
METRIC_COLUMNS = ("images", "held-out loss", "PSNR (dB)", "SSIM", "ΔE00", "colourfulness",
                  "colourfulness gap", "mean chroma", "mean hue (deg)", "faces", "background",
                  "measured")

__all__ = [
    "Comparison",
    "HeldOutMetrics",
    "PredictedAB",
    "against_baselines",
    "baselines",
    "choose_temperature",
    "compare",
    "constant_loss",
    "evaluate_folder",
    "gray_summary",
    "load_folder",
    "mean_ab",
    "measure",
    "per_pixel_mean_ab",
    "predict_ab",
    "predictions",
    "quality_targets",
    "summary_row",
    "table_markdown",
]


# --- predictions -------------------------------------------------------------------------


# Images converted and measured at a time: memory stays flat however many are evaluated.
CHUNK = 64


def _check_not_empty(indices) -> np.ndarray:
    indices = np.asarray(indices)
    if len(indices) == 0:
        raise ValueError("no images to evaluate: the index is empty (a split or source with "
                         "no images?).")
    return indices


def predict_ab(model: keras.Model, data: PortraitData, indices, batch_size: int = CHUNK):
    """Scaled a,b predicted for ``indices`` (N, S, S, 2) float32, all in memory: for a
    few images. :class:`PredictedAB` computes them chunk by chunk instead."""
    return PredictedAB(model, data, indices, batch_size)[:]


class PredictedAB:
    """A model's scaled a,b for ``indices``, computed when sliced: it slices like the
    (N, S, S, 2) array :func:`predict_ab` returns, but holds no predictions, so measuring
    a whole set never keeps all of them in memory."""

    dtype = np.dtype(np.float32)

    def __init__(self, model: keras.Model, data: PortraitData, indices,
                 batch_size: int = CHUNK, temperature: float | None = None):
        self.model, self.data, self.batch_size = model, data, batch_size
        self.temperature = temperature  # the classification head's read-out (None: default)
        self.indices = np.asarray(indices)
        self.shape = (len(self.indices), data.image_size, data.image_size, 2)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key) -> np.ndarray:
        chosen = np.atleast_1d(self.indices[key])
        output = np.empty((len(chosen), *self.shape[1:]), np.float32)
        for start in range(0, len(chosen), self.batch_size):
            batch = chosen[start : start + self.batch_size]
            lightness, _ = self.data.prepared.model_arrays(batch)
            output[start : start + len(batch)] = predict_scaled_ab(
                self.model, lightness, self.data.embeddings[batch], self.temperature)
        return output[0] if np.ndim(self.indices[key]) == 0 else output

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype)


def _ab_batches(data: PortraitData, indices, size: int = 256):
    for start in range(0, len(indices), size):
        yield data.prepared.model_arrays(np.asarray(indices[start : start + size]))[1]


def mean_ab(data: PortraitData, indices) -> np.ndarray:
    """The mean scaled a,b over the pixels of ``indices`` (2,)."""
    total = sum(ab.reshape(-1, 2).sum(axis=0, dtype=np.float64)
                for ab in _ab_batches(data, indices))
    return (total / (len(indices) * data.image_size ** 2)).astype(np.float32)


def per_pixel_mean_ab(data: PortraitData, indices) -> np.ndarray:
    """The mean scaled a,b of ``indices`` position by position (S, S, 2) float32."""
    total = sum(ab.sum(axis=0, dtype=np.float64) for ab in _ab_batches(data, indices))
    return (total / len(indices)).astype(np.float32)


def constant_loss(data: PortraitData, indices, value) -> float:
    """The report's loss of predicting the same scaled a,b ``value`` for every image: a
    constant (2,) everywhere, or an (S, S, 2) map, one a,b per position."""
    value = np.asarray(value, np.float32)
    total = sum(float(np.square(ab - value).sum(dtype=np.float64))
                for ab in _ab_batches(data, indices))
    return total / (len(indices) * data.image_size ** 2 * 2)


def baselines(count: int, image_size: int, train_mean=None, per_pixel_mean=None
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Predictions that need no training for ``count`` images: gray (a = b = 0) everywhere
    and, for those given, the training mean scaled a,b everywhere and the per-pixel map
    ``per_pixel_mean`` (S, S, 2) for every image. Returns {name: (scaled a,b, constant or
    map)}; the a,b are read-only broadcast views, so they take no memory."""
    shape = (count, image_size, image_size, 2)
    constants = {GRAY: np.zeros(2, np.float32)}
    if train_mean is not None:
        constants[TRAIN_MEAN] = np.asarray(train_mean, np.float32)
    if per_pixel_mean is not None:
        constants[PER_PIXEL_MEAN] = np.asarray(per_pixel_mean, np.float32)
    return {name: (np.broadcast_to(value, shape), value) for name, value in constants.items()}


def predictions(data: PortraitData, indices, models=None, train_indices=None) -> dict:
    """Predictions for ``indices`` by name, each sliceable like an (N, S, S, 2) array: gray
    first, then with ``train_indices`` the training mean a,b and the per-pixel training
    mean a,b (of those images), then one :class:`PredictedAB` for each of ``models``
    ({name: keras model, or (model, temperature) for a classification read-out})."""
    indices = _check_not_empty(indices)
    means = (() if train_indices is None
             else (mean_ab(data, train_indices), per_pixel_mean_ab(data, train_indices)))
    found = {name: predicted for name, (predicted, _) in
             baselines(len(indices), data.image_size, *means).items()}
    for name, entry in (models or {}).items():
        model, temperature = entry if isinstance(entry, tuple) else (entry, None)
        found[name] = PredictedAB(model, data, indices, temperature=temperature)
    return found


def gray_summary(data: PortraitData, indices) -> dict:
    """The :func:`measure` summary of gray output (a = b = 0) for ``indices``: the row
    every table of studies compares with."""
    return measure(data, indices, predictions(data, indices)[GRAY])[1]


# --- metrics and tables --------------------------------------------------------------------


def measure(data: PortraitData, indices, predicted_ab, chunk: int = CHUNK) -> tuple[dict, dict]:
    """(per-image metrics, summary with the loss) of predictions for ``indices``.

    ``predicted_ab`` is an array or anything that slices like one (:class:`PredictedAB`);
    it is read ``chunk`` images at a time."""
    indices = _check_not_empty(indices)
    if len(predicted_ab) != len(indices):
        raise ValueError(f"{len(predicted_ab)} predictions for {len(indices)} images.")
    parts, squared = [], 0.0
    for start in range(0, len(indices), chunk):
        lightness, truth_ab = data.prepared.model_arrays(indices[start : start + chunk])
        predicted = np.asarray(predicted_ab[start : start + chunk], np.float32)
        parts.append(metrics.evaluate(color.model_to_rgb(lightness, truth_ab),
                                      color.model_to_rgb(lightness, predicted)))
        squared += float(np.square(predicted - truth_ab).sum(dtype=np.float64))
    per_image = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    summary = metrics.summarize(per_image)
    summary["loss"] = squared / (len(indices) * data.image_size ** 2 * 2)
    return per_image, summary


def summary_row(summary: dict, **leading) -> dict:
    """A table row: the ``leading`` columns (a name, settings...), then the metrics."""
    return {
        **leading,
        "images": summary["images"],
        "held-out loss": summary["loss"],
        "PSNR (dB)": summary["psnr"],
        "SSIM": summary["ssim"],
        "ΔE00": summary["delta_e"],
        "colourfulness": summary["colourfulness"],
        "colourfulness gap": summary["colourfulness_gap"],
        "mean chroma": summary["chroma"],
        "chroma vs truth": summary["chroma"] / max(summary["chroma_truth"], 1e-9),
        "mean hue (deg)": summary["hue"],
        **({"faces": metrics.describe_region(summary, "face"),
            "background": metrics.describe_region(summary, "background")}
           if "face_chroma" in summary else {}),
        "measured": metrics.describe_colour(summary),
    }


@dataclass
class Comparison:
    rows: list[dict]
    per_image: dict[str, dict] = field(default_factory=dict)  # name -> metric arrays
    summaries: dict[str, dict] = field(default_factory=dict)
    # name -> scaled a,b: arrays, broadcast views or PredictedAB (computed when sliced)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


def compare(data: PortraitData, indices, predictions: dict) -> Comparison:
    """Measure each of ``predictions`` ({name: scaled a,b for ``indices``}) on the same images."""
    result = Comparison([], predictions=dict(predictions))
    for name, predicted in predictions.items():
        result.per_image[name], result.summaries[name] = measure(data, indices, predicted)
        result.rows.append(summary_row(result.summaries[name], prediction=name))
    return result


def against_baselines(model, data: PortraitData, indices, train_indices,
                      temperature: float | None = None) -> Comparison:
    """``model``'s predictions for ``indices`` beside the baselines of :func:`predictions`
    (rows: gray, training mean a,b, per-pixel training mean a,b of ``train_indices``, then
    the trained model; ``temperature``: a classification model's read-out, None for the
    default)."""
    return compare(data, indices, predictions(data, indices, {TRAINED: (model, temperature)},
                                              train_indices))


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def table_markdown(rows, columns=None) -> str:
    """A Markdown table of ``rows`` (dicts); ``columns`` defaults to the first row's keys."""
    columns = tuple(columns or rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# --- choosing and judging (notebook 09) ----------------------------------------------------


def choose_temperature(summaries: dict, gray: dict, ssim_margin: float = 0.01):
    """The classification head's read-out temperature, chosen on held-out images:
    ``summaries`` maps each temperature tried to its metric summary, ``gray`` is the gray
    baseline's on the same images. Among the temperatures whose PSNR is at least gray's
    and whose SSIM is within ``ssim_margin`` of gray's, the one with the smallest
    colourfulness gap (the highest temperature on a tie); None when none qualifies."""
    allowed = [t for t, s in summaries.items()
               if s["psnr"] >= gray["psnr"] and s["ssim"] >= gray["ssim"] - ssim_margin]
    if not allowed:
        return None
    return min(allowed, key=lambda t: (abs(summaries[t]["colourfulness_gap"]), -t))


def quality_targets(gray: dict, regression: dict, classification: dict,
                    cross: dict) -> list[dict]:
    """Notebook 09's quality targets, measured: ``gray``, ``regression`` and ``classification`` are
    summaries on the test persons (the two heads trained with the same budget; the
    validation persons chose the temperature, so they are not where it is judged);
    ``cross`` maps names ("gray", "regression", "classification") to summaries of models
    trained on one source and scored on the other. One row per target: what it asks, what
    was measured, and whether it was met, by one training run of each head: a finding about
    these models (``replicates`` 1), untested across seeds."""
    gap_mse, gap_cls = abs(regression["colourfulness_gap"]), abs(
        classification["colourfulness_gap"])
    best = max((name for name in cross if name != "gray"), key=lambda n: cross[n]["psnr"])
    targets = [
        {"target": "colourfulness gap at most half the MSE model's",
         "measured": f"{gap_cls:.2f} against {gap_mse:.2f} ({gap_cls / gap_mse:.0%})",
         "met": bool(gap_cls <= gap_mse / 2)},
        {"target": "PSNR at or above gray's",
         "measured": f"{classification['psnr']:.2f} dB against {gray['psnr']:.2f} dB "
                     f"({classification['psnr'] - gray['psnr']:+.2f})",
         "met": bool(classification["psnr"] >= gray["psnr"])},
        {"target": "SSIM within 0.01 of gray's",
         "measured": f"{classification['ssim']:.4f} against {gray['ssim']:.4f} "
                     f"({classification['ssim'] - gray['ssim']:+.4f})",
         "met": bool(classification["ssim"] >= gray["ssim"] - 0.01)},
        {"target": "across sources, the best model beats gray in PSNR and SSIM",
         "measured": f"{best}: {cross[best]['psnr']:.2f} dB, SSIM {cross[best]['ssim']:.4f} "
                     f"against gray's {cross['gray']['psnr']:.2f} dB, "
                     f"{cross['gray']['ssim']:.4f}",
         "met": bool(cross[best]["psnr"] > cross["gray"]["psnr"]
                     and cross[best]["ssim"] > cross["gray"]["ssim"])},
    ]
    return [{**target, "replicates": 1} for target in targets]


# --- any folder of colour photos -----------------------------------------------------------


def load_folder(folder, extractor, image_size: int, progress: bool = True
                ) -> tuple[PortraitData, list]:
    """The colour photos of ``folder`` prepared as for training (one split, ``"all"``) and
    embedded by ``extractor``; also the files skipped, with reasons.

    A folder without a single colour photo is a ValueError that says what it held.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder.")
    report = clean(folder, progress=progress)
    if not report.kept:
        raise ValueError(f"no colour images in {folder} to evaluate on: a colorizer is "
                         f"measured against the true colours.\n{report.table()}")
    return (prepared_data(folder, report.kept, {"all": report.kept}, image_size, extractor,
                          progress), report.skipped)


def evaluate_folder(folder, trained, extractor, image_size: int | None = None,
                    progress: bool = True) -> dict:
    """The metric table of a saved model (a :class:`koala_lib.trained_model.TrainedColorizer`)
    against the gray and mean-a,b baselines on the colour photos of ``folder``.

    The mean a,b is the model's training mean when its metadata records it (notebook 06
    saves it), else the folder's own (said in the result's ``mean_ab_source``).
    """
    size = int(trained.image_size if image_size is None else image_size)
    data, skipped = load_folder(folder, extractor, size, progress=progress)
    indices = data.indices("all")
    recorded = trained.description.train_mean_ab
    train_mean = np.asarray(recorded, np.float32) if recorded else mean_ab(data, indices)
    # No per-pixel map: a saved model records only its training mean a,b.
    found = {name: predicted for name, (predicted, _) in
             baselines(len(indices), size, train_mean).items()}
    found[TRAINED] = PredictedAB(trained.model, data, indices, temperature=trained.temperature)
    result = compare(data, indices, found)
    return {
        "folder": str(folder), "model": str(trained.path), "head": trained.head,
        "temperature": trained.temperature if trained.head == "classification" else None,
        "image_size": size,
        "images": len(indices), "protocol": metrics.PROTOCOL,
        "mean_ab_source": "the model's training images" if recorded else "this folder",
        "skipped": [{"file": str(item.path), "reason": item.reason} for item in skipped],
        "rows": result.rows,
    }


# --- during training -----------------------------------------------------------------------


class HeldOutMetrics(keras.callbacks.Callback):
    """Adds held-out PSNR, SSIM, colourfulness and chroma to the logs of the epochs it
    measures (the others have none: their curves have gaps).

    They are computed on the host, image by image, and on a GPU they can take as long as an
    epoch (about 4 s for 217 portraits at 224 on the H200 machine, issue 25). ``every=N``
    measures the first epoch, every N-th after it and the last. ``every="auto"`` measures
    the first and the last epoch, and in between as often as keeps them under ``budget``
    (a tenth) of the training time: after each measurement, every ceil(its seconds /
    (budget x the epoch's seconds)) epochs. On a CPU, where an epoch takes far longer than
    the metrics, that is nearly every epoch (the rule reads timings, so a slow measurement
    can skip one). Which epochs were measured is in :attr:`measured`."""

    def __init__(self, data: PortraitData, indices, every: int | str = "auto",
                 budget: float = 0.1):
        super().__init__()
        if every != "auto" and (isinstance(every, bool) or not isinstance(every, int)
                                or every < 1):
            raise ValueError(f"every must be a whole number of epochs >= 1 or 'auto', got "
                             f"{every!r}.")
        if not 0 < budget <= 1:
            raise ValueError(f"budget is a fraction of the training time, got {budget}.")
        self.data, self.indices = data, np.asarray(indices)
        self.every, self.budget = every, float(budget)
        self.measured: list[int] = []  # epochs, counted from 1
        self.seconds: list[float] = []  # what each measurement took
        self._interval, self._epoch_start, self._epoch_seconds = 1, None, None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def _due(self, epoch: int) -> bool:
        last = self.params.get("epochs") if self.params else None
        if not self.measured or (last is not None and epoch + 1 >= last):
            return True
        interval = self.every if self.every != "auto" else self._interval
        return epoch + 1 - self.measured[-1] >= interval

    def on_epoch_end(self, epoch, logs=None):
        if self._epoch_start is not None:
            self._epoch_seconds = time.perf_counter() - self._epoch_start
        if logs is None or not self._due(epoch):
            return
        start = time.perf_counter()
        _, summary = measure(self.data, self.indices,
                             PredictedAB(colorizer_of(self.model), self.data, self.indices))
        self.seconds.append(time.perf_counter() - start)
        self.measured.append(epoch + 1)
        if self._epoch_seconds:
            self._interval = max(1, math.ceil(
                self.seconds[-1] / (self.budget * self._epoch_seconds)))
        for key in ("psnr", "ssim", "colourfulness", "colourfulness_gap", "chroma", "hue"):
            logs[f"val_{key}"] = summary[key]
