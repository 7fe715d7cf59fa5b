"""Training the colorizer: the report's objective and optimiser, done so that it can be trusted.

* **Objective**: the report's 1/(2HW) sum of squared a,b errors (:func:`koala_lib.losses.
  report_mse`, the same number as Keras' MSE), Adam at lr 0.001.
* **Gradient clipping** (``clipnorm=1.0``, the one change): at lr 0.001 plain Adam can push
  every a,b to +-128 in its first steps, where the tanh's gradient vanishes and the run never
  recovers; clipping the gradient norm at 1 made every measured run converge (notebook 05).
  ``clipnorm=None`` gives the report's plain Adam.
* **Cached embeddings**: the frozen classifier runs once per image before training
  (:class:`koala_lib.data.cache.EmbeddingCache`); each step sees (L, embedding) -> a,b only.
* **Where the work is done**: the step on stored bytes, on the accelerator
  (:mod:`koala_lib.trainer`); precision, several GPUs and micro-batches
  (:mod:`koala_lib.precision`); checkpoints, the run's state and resuming
  (:mod:`koala_lib.runs`).
* **Logs**: ``log.csv``, TensorBoard under ``tensorboard/`` (when the ``tensorflow``
  package is installed), a grid of validation colorizations per epoch under ``samples/``,
  Keras progress bars, and the training images/s of every epoch.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from koala_lib import color, files
from koala_lib.data.feeder import ColorizationFeeder, FeederEpoch
from koala_lib.data.portraits import PortraitData
from koala_lib.environment import current as current_environment
from koala_lib.environment import visible_gpus
from koala_lib.losses import SoftEncodedCrossEntropy, report_mse
from koala_lib.model import CLASSIFICATION_FACTOR, HEADS, build_colorizer, predict_scaled_ab
from koala_lib.precision import (
    distribution_scope,
    micro_batching,
    precision_policy,
    resolve_precision,
)
from koala_lib.runs import KEEP_CHECKPOINTS, STATE_FILE, RunRecorder, load_newest_intact, read_state
from koala_lib.trainer import (
    StoredBytesTrainer,
    colorizer_of,
    keeps_resident,
    stored_bytes_trainer,
)

ops = keras.ops


__all__ = [
    "ColorizationSnapshots",
    "SubsetLoss",
    "TrainConfig",
    "TrainResult",
    "class_weights_for",
    "compile_colorizer",
    "continues",
    "run_identity",
    "train",
]


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """How a colorizer is trained. The image size is not a setting here: it is the data's
    (``load_portraits(image_size=...)``), so the two cannot disagree."""

    batch_size: int = 32
    epochs: int = 30
    steps_per_epoch: int | None = None  # None: one pass over the training images
    max_micro_batch: int | None = None  # larger batches are accumulated from micro-batches
    learning_rate: float = 1e-3  # the report's
    clipnorm: float | None = 1.0  # None: the report's plain Adam (can get stuck, notebook 05)
    precision: str = "auto"  # see koala_lib.precision.PRECISIONS
    jit_compile: bool | str = "auto"
    flip: bool = True
    seed: int = 42
    standardize_embedding: bool = True
    snapshot_images: int = 6  # validation colorizations saved each epoch (0: none)
    # "regression" (the report's MSE) or "classification" (colour bins, Zhang et al. 2016:
    # rebalanced cross-entropy, see koala_lib.quantize); mse_weight > 0 adds the MSE of the
    # classification head's annealed mean (a mixed objective).
    head: str = "regression"
    mse_weight: float = 0.0
    # Regularisation (notebook 10): decoupled weight decay (AdamW) when > 0, and random
    # zoom-and-crop augmentation up to this factor (1.0: none; see data.feeder).
    weight_decay: float = 0.0
    max_zoom: float = 1.0


# --- callbacks -----------------------------------------------------------------------------


class ColorizationSnapshots(keras.callbacks.Callback):
    """After each epoch, colorize a few fixed validation images and save one PNG grid.

    Rows: the gray input, the prediction, the truth; one column per image. The file names
    (``samples/epoch_001.png``, ...) are kept in :attr:`paths`.
    """

    def __init__(self, folder, lightness, embeddings, truth_ab):
        super().__init__()
        self.folder = Path(folder)
        self.lightness, self.embeddings = lightness, embeddings
        self.gray = color.model_to_rgb(lightness, np.zeros_like(truth_ab))
        self.truth = color.model_to_rgb(lightness, truth_ab)
        self.paths: list[Path] = sorted(self.folder.glob("epoch_*.png"))

    def on_epoch_end(self, epoch, logs=None):
        from PIL import Image

        predicted = predict_scaled_ab(colorizer_of(self.model), self.lightness,
                                      self.embeddings)
        rows = [np.concatenate(list(images), axis=1)
                for images in (self.gray, color.model_to_rgb(self.lightness, predicted),
                               self.truth)]
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"epoch_{epoch + 1:03d}.png"
        Image.fromarray(color.to_uint8(np.concatenate(rows, axis=0))).save(path)
        if path not in self.paths:
            self.paths.append(path)


class SubsetLoss(keras.callbacks.Callback):
    """For :func:`train`'s callbacks: adds the loss on fixed images (``indices`` of
    ``data``, as they are: no flip, no zoom) to each epoch's logs as ``name``. With training
    images this is the training loss measured the way ``val_loss`` is (Keras' own ``loss``
    is averaged over an epoch of augmented batches while the weights change), so
    ``val_loss - train_subset_loss`` is the generalisation gap of that epoch."""

    def __init__(self, data: PortraitData, indices, name: str = "train_subset_loss",
                 batch_size: int = 64):
        super().__init__()
        self.name = name
        self.feeders = {resident: ColorizationFeeder(
            data.prepared, data.embeddings, indices, batch_size, shuffle=False, packed=True,
            resident=resident) for resident in (False, True)}

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            trainer = self.model
            if not isinstance(trainer, StoredBytesTrainer):  # a compiled colorizer, given
                trainer = stored_bytes_trainer(trainer)
            logs[self.name] = float(trainer.evaluate(self.feeders[trainer.resident],
                                                     verbose=0))


def _tensorboard(folder: Path, verbose: bool):
    try:
        import tensorboard  # noqa: F401
        import tensorflow  # noqa: F401  (Keras writes TensorBoard logs with tf.summary)
    except ImportError:
        if verbose:
            print("TensorBoard log skipped: it needs the tensorflow and tensorboard packages.")
        return None
    return keras.callbacks.TensorBoard(str(folder), write_graph=False, profile_batch=0)


# --- training ------------------------------------------------------------------------------


@dataclass
class TrainResult:
    model: keras.Model
    run_dir: Path
    history: list[dict]  # one dict per epoch, the whole run (resumed parts included)
    epochs_done: int
    resumed_from: int | None  # the epoch a resumed run started from
    precision: str
    jit_compile: bool | str
    distribution: str
    micro_batch: int
    accumulation_steps: int
    snapshots: list[Path] = field(default_factory=list)

    def curve(self, key: str) -> np.ndarray:
        return np.array([row.get(key, np.nan) for row in self.history])

    @property
    def images_per_second(self) -> float:
        """Median training throughput, leaving out the first epoch (compilation) if possible."""
        values = self.curve("images_per_second")
        values = values[~np.isnan(values)]
        if not len(values):
            return float("nan")
        return float(np.median(values[1:] if len(values) > 1 else values))


def compile_colorizer(model: keras.Model, config: TrainConfig, accumulation: int = 1,
                      class_weights=None) -> None:
    """The report's loss (or, for the classification head, the rebalanced cross-entropy with
    ``class_weights``, :func:`class_weights_for`) and Adam (AdamW with
    ``config.weight_decay``) clipped at ``config.clipnorm``, averaging the gradients of
    ``accumulation`` micro-batches before each update."""
    if config.head not in HEADS:
        raise ValueError(f"unknown head {config.head!r}: use one of {HEADS}.")
    accumulate = accumulation if accumulation > 1 else None
    if config.weight_decay:  # AdamW: the decay is applied to the weights, not the gradient
        optimizer = keras.optimizers.AdamW(
            config.learning_rate, weight_decay=config.weight_decay, clipnorm=config.clipnorm,
            gradient_accumulation_steps=accumulate)
    else:
        optimizer = keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm,
                                          gradient_accumulation_steps=accumulate)
    if config.head == "regression":
        loss = report_mse
    elif class_weights is None:
        raise ValueError("the classification head needs class_weights (class_weights_for).")
    else:
        loss = SoftEncodedCrossEntropy(class_weights, CLASSIFICATION_FACTOR, config.mse_weight)
    model.compile(optimizer=optimizer, loss=loss, jit_compile=config.jit_compile)


def class_weights_for(data: PortraitData, indices, batch: int = 256) -> np.ndarray:
    """The rebalancing weights (Q,) of the colour bins for the images ``indices``: their
    pixels' bin distribution, smoothed, mixed with uniform, inverted
    (:func:`koala_lib.quantize.rebalancing_weights`)."""
    from koala_lib import quantize

    indices = np.asarray(indices)
    batches = (color.unscale_ab(data.prepared.model_arrays(indices[start : start + batch])[1])
               for start in range(0, len(indices), batch))
    return quantize.rebalancing_weights(quantize.smoothed_prior(quantize.bin_counts(batches)))


def run_identity(data: PortraitData, config: TrainConfig, train_indices=None,
                 val_indices=None) -> dict:
    """What makes a run the same run: its settings, data and splits (the number of epochs
    aside, see :func:`identity_differences`)."""
    train_indices = data.indices("train") if train_indices is None else train_indices
    val_indices = data.indices("val") if val_indices is None else val_indices
    return {
        "config": asdict(config), "data": data.fingerprint(),
        "train_indices": hashlib.sha256(np.asarray(train_indices, np.int64)).hexdigest()[:16],
        "val_indices": hashlib.sha256(np.asarray(val_indices, np.int64)).hexdigest()[:16],
    }


def identity_differences(saved: dict, now: dict) -> dict:
    """The settings in which two runs differ, (saved, now) by name. The number of epochs is
    left out: asking a run for more epochs extends it, it does not make it another run."""
    defaults = asdict(TrainConfig())

    def flat(identity):
        values = {key: value for key, value in identity.items() if key != "config"}
        config = identity.get("config")
        if not isinstance(config, dict):
            return {**values, "config": config}
        # A setting added since the run was saved counts as its default (head, ...); one
        # removed since is left out (image_size: the data's fingerprint holds the size).
        config = {**{key: defaults[key] for key in defaults.keys() - config.keys()},
                  **{key: value for key, value in config.items() if key in defaults}}
        return {**values, **{f"config.{key}": value for key, value in config.items()
                             if key != "epochs"}}

    saved, now = flat(saved), flat(now)
    return {key: (saved.get(key), now.get(key)) for key in dict.fromkeys([*now, *saved])
            if saved.get(key) != now.get(key)}


def continues(run_dir, data: PortraitData, config: TrainConfig, train_indices=None,
              val_indices=None) -> bool:
    """Whether ``run_dir`` holds a run that training ``config`` on ``data`` would continue
    (the same run, perhaps with fewer epochs); False when it holds none or another."""
    try:
        state = read_state(Path(run_dir)) if Path(run_dir, STATE_FILE).is_file() else None
    except (ValueError, OSError):  # a damaged run is not continued (train() says why)
        return False
    return state is not None and not identity_differences(
        state["identity"], run_identity(data, config, train_indices, val_indices))


def train(data: PortraitData, config: TrainConfig, run_dir, train_indices=None,
          val_indices=None, resume: bool = True, callbacks=(), verbose="auto",
          keep_checkpoints: int = KEEP_CHECKPOINTS, checkpoint_every_epoch: bool = True,
          tensorboard: bool = True, resident="auto") -> TrainResult:
    """Train (or resume) a colorizer on ``data``; everything is written under ``run_dir``.

    ``train_indices`` / ``val_indices`` default to the "train" and "val" splits. A
    ``run_dir`` that holds a checkpoint of the same run is resumed (``resume=False`` refuses
    to touch it instead), or extended when ``config.epochs`` grew; one that holds a
    different run, a damaged state or run files without a state is refused with what to do.
    ``keep_checkpoints=1`` halves the disk a run takes (about 80 MB a checkpoint, the
    optimizer's state included), at the price of no older checkpoint to fall back on.
    For many short runs (:mod:`koala_lib.studies`), ``checkpoint_every_epoch=False`` writes
    the checkpoint and the state once, after the last epoch (a run cut short starts over),
    and ``tensorboard=False`` writes no TensorBoard log. ``resident``: whether the prepared
    set is copied to the accelerator once and each step gathers its batch there
    (:func:`keeps_resident`; "auto": when it fits in a quarter of the GPU's memory under
    JAX, never on a CPU). The batches, their order and the results are the same either way.
    """
    if keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints must be at least 1, got {keep_checkpoints}.")
    train_indices = data.indices("train") if train_indices is None else np.asarray(train_indices)
    val_indices = data.indices("val") if val_indices is None else np.asarray(val_indices)
    if len(train_indices) == 0:
        raise ValueError("no training images.")
    if len(val_indices) == 0:  # allowed (a quick experiment), but never silently
        warnings.warn("no validation images: this run measures no held-out loss, so neither "
                      "over-fitting nor a stalled run would show. Give val_indices, or load "
                      "portraits of more persons.", stacklevel=2)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with files.folder_lock(run_dir, "a training run"):  # a second training there is refused
        return _train_holding_the_lock(data, config, run_dir, train_indices, val_indices,
                                       resume, callbacks, verbose, keep_checkpoints,
                                       checkpoint_every_epoch, tensorboard, resident)


def _train_holding_the_lock(data, config, run_dir, train_indices, val_indices, resume,
                            callbacks, verbose, keep_checkpoints, checkpoint_every_epoch,
                            tensorboard, resident) -> TrainResult:
    identity = run_identity(data, config, train_indices, val_indices)
    state = read_state(run_dir)
    if state is not None:
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a run ({state['epochs_done']} "
                                  "epochs): choose another run_dir, pass resume=True to "
                                  f"continue it, or delete the folder {run_dir} to start over.")
        different = identity_differences(state["identity"], identity)
        if different:
            raise ValueError(f"{run_dir} holds a different run; differences (saved, now): "
                             f"{different}. Choose another run_dir to train this one, or "
                             f"delete the folder {run_dir} to replace the old run.")
        state["identity"] = identity  # the same run; it records the epochs last asked for

    micro, accumulation = micro_batching(config.batch_size, config.max_micro_batch)
    steps = config.steps_per_epoch
    if accumulation > 1 and steps is None:  # whole batches only, so updates stay aligned
        steps = -(-len(train_indices) // config.batch_size)
    feeder_steps = None if steps is None else steps * accumulation
    on_device = keeps_resident(data, resident, config.max_zoom)
    train_feeder = ColorizationFeeder(data.prepared, data.embeddings, train_indices, micro,
                                      shuffle=True, flip=config.flip, seed=config.seed,
                                      steps_per_epoch=feeder_steps, max_zoom=config.max_zoom,
                                      packed=True, resident=on_device)
    val_feeder = None
    if len(val_indices):
        val_feeder = ColorizationFeeder(data.prepared, data.embeddings, val_indices,
                                        max(micro, 32), shuffle=False, packed=True,
                                        resident=on_device)
    images_per_epoch = (len(train_indices) if feeder_steps is None else feeder_steps * micro)

    precision = resolve_precision(config.precision)
    keras.utils.set_random_seed(config.seed)
    with distribution_scope() as distribution, precision_policy(precision):
        devices = max(1, visible_gpus()) if distribution != "single device" else 1
        if micro % devices:
            raise ValueError(f"the (micro-)batch {micro} does not split evenly over "
                             f"{devices} GPUs: choose a batch size divisible by {devices}.")
        if state is not None and state["checkpoint"]:
            model, state = load_newest_intact(run_dir, state)
            resumed_from = state["epochs_done"]
        else:
            model = build_colorizer(data.image_size, data.embeddings.shape[-1],
                                    standardize_embedding=config.standardize_embedding,
                                    head=config.head)
            compile_colorizer(model, config, accumulation, class_weights_for(
                data, train_indices) if config.head == "classification" else None)
            resumed_from = None
            state = {"identity": identity, "epochs_done": 0, "checkpoint": None,
                     "checkpoints": [], "history": [], "precision": precision}
        trainer = stored_bytes_trainer(model, config.jit_compile, (
            data.prepared.packed_l, data.prepared.packed_ab, data.embeddings)
            if on_device else None)
        if resumed_from is None and val_feeder is not None:  # where the curves start
            state["history"].append({"epoch": 0, "val_loss": float(
                trainer.evaluate(val_feeder, verbose=0))})
        initial_epoch = state["epochs_done"]
        show = (1 if _interactive() else 2) if verbose == "auto" else verbose
        if show and resumed_from is not None and initial_epoch >= config.epochs:
            more = (f", more than the {config.epochs} asked" if initial_epoch > config.epochs
                    else "")
            epochs = f"{initial_epoch} epoch{'s' if initial_epoch != 1 else ''}"
            print(f"{run_dir.name} already holds {epochs}{more}: nothing to "
                  "train; the run is returned as it is.")
        elif show and resumed_from is not None:
            print(f"Resuming {run_dir.name} after epoch {initial_epoch} of {config.epochs}.")
        if show and initial_epoch < config.epochs:
            print(f"Training {config.epochs} epochs of "
                  f"{'one pass' if steps is None else f'{steps} steps'} x batch "
                  f"{config.batch_size}"
                  f"{f' ({accumulation} micro-batches of {micro})' if accumulation > 1 else ''}"
                  f" on {len(train_indices)} images | {config.head} head | {precision} | "
                  f"{distribution} | "
                  f"{'data on the device | ' if on_device else ''}"
                  f"backend {keras.backend.backend()}")
        recorder = RunRecorder(run_dir, state, images_per_epoch, keep_checkpoints,
                                None if checkpoint_every_epoch else config.epochs)
        snapshots = None
        # The caller's callbacks run before the recorder, so that what they add to an
        # epoch's logs (held-out metrics, say) is checkpointed with the history.
        extra = [FeederEpoch(train_feeder), *callbacks, recorder]
        if config.snapshot_images and len(val_indices):
            shown = val_indices[: config.snapshot_images]
            lightness, truth_ab = data.prepared.model_arrays(shown)
            snapshots = ColorizationSnapshots(run_dir / "samples", lightness,
                                              data.embeddings[shown], truth_ab)
            extra.append(snapshots)
        board = _tensorboard(run_dir / "tensorboard", bool(show)) if tensorboard else None
        if board is not None:
            extra.append(board)
        if initial_epoch < config.epochs:
            trainer.fit(train_feeder, validation_data=val_feeder, epochs=config.epochs,
                      initial_epoch=initial_epoch, callbacks=extra,
                      # The feeder shuffles, seeded; Keras' own shuffle of the batch order
                      # draws from the global RNG and would differ after a resume.
                      shuffle=False,
                      verbose=show)
    return TrainResult(model, run_dir, state["history"], state["epochs_done"], resumed_from,
                       precision, getattr(trainer, "jit_compile", config.jit_compile),
                       distribution, micro, accumulation,
                       list(snapshots.paths) if snapshots else [])


def _interactive() -> bool:
    """True in a notebook or terminal a person watches; False in CI or a ci-profile run."""
    return not current_environment().batch_run



