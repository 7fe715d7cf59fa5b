"""Training the colorizer: the report's objective and optimiser, done so that it can be trusted.

* **Objective**: the report's 1/(2HW) sum of squared a,b errors (:func:`koala_lib.losses.
  report_mse`, the same number as Keras' MSE), Adam at lr 0.001.
* **Gradient clipping** (``clipnorm=1.0``, the one change): at lr 0.001 plain Adam can push
  every a,b to +-128 in its first steps, where the tanh's gradient vanishes and the run never
  recovers; clipping the gradient norm at 1 made every measured run converge (notebook 05).
  ``clipnorm=None`` gives the report's plain Adam.
* **Cached embeddings**: the frozen classifier runs once per image before training
  (:class:`koala_lib.data.cache.EmbeddingCache`); each step sees (L, embedding) -> a,b only.
* **Stored bytes in, on the accelerator**: the feeder hands out the prepared set's uint8 L
  and int8 a,b with a flip flag an image; :class:`StoredBytesTrainer` turns them into the
  network's ranges and flips them inside the compiled step, so the host only copies bytes.
  What is saved, and what ``colorize`` loads, is the colorizer itself (float L in, as ever).
* **Precision** ``auto``: mixed bfloat16 on GPUs that have it (compute capability 8.0+:
  A100, L4, H100), mixed float16 with loss scaling on older ones (Colab's T4), float32 on
  CPUs. The network's last convolution stays float32 either way (:mod:`koala_lib.model`).
  Steps are XLA-compiled where the backend does it (Keras' ``jit_compile="auto"``).
* **Checkpoints**: after every epoch the model and its optimizer state go to
  ``run_dir/checkpoint-epochNNN.keras``; the last two are kept (``KEEP_CHECKPOINTS``), and
  ``run_dir/state.json`` (written atomically) records the epoch, the settings, the history
  and the kept checkpoints. Calling :func:`train` again with the same ``run_dir`` resumes
  where the last checkpoint left off (a Colab disconnect costs at most one epoch) and ends
  where an uninterrupted run would: the feeder's order and flips depend only on (seed,
  epoch), so the resumed epochs see the same batches. If the newest checkpoint cannot be
  loaded (a copy cut short), it warns and resumes from the one before, training that epoch
  again. The same settings with more ``epochs`` extend a finished run; fewer return it as
  it is. Nothing in a run folder is overwritten on doubt: a different run, a
  ``state.json`` that is damaged or disagrees with the checkpoints, or run files without a
  ``state.json`` are refused with the folder and what to do.
* **Logs**: ``log.csv`` (one row an epoch, rewritten from the checkpointed history so it
  never disagrees with it), TensorBoard under ``tensorboard/`` (when the ``tensorflow``
  package is installed), a grid of validation colorizations per epoch under ``samples/``,
  Keras progress bars, and the training images/s of every epoch.
* **Several GPUs** are used through the backend's own data parallelism:
  ``tf.distribute.MirroredStrategy`` under TensorFlow, ``keras.distribution.DataParallel``
  under JAX. The batch size is the global one.
* **Batches larger than memory** (the report's batch of 4000): with ``max_micro_batch``
  the batch is split into equal micro-batches whose gradients Adam averages before one
  update (Keras' ``gradient_accumulation_steps``): the same update as one big batch.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from koala_lib import color, files
from koala_lib.data.feeder import ColorizationFeeder, FeederEpoch
from koala_lib.data.portraits import PortraitData
from koala_lib.environment import current as current_environment
from koala_lib.environment import visible_gpus
from koala_lib.losses import SoftEncodedCrossEntropy, report_mse, steps_until_plateau
from koala_lib.model import CLASSIFICATION_FACTOR, HEADS, build_colorizer, predict_scaled_ab

ops = keras.ops

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STATE_FILE = "state.json"
KEEP_CHECKPOINTS = 2  # the newest and the one before: a damaged newest does not lose the run
CHECKPOINT_NAME = re.compile(r"checkpoint-epoch(\d{3,})\.keras")

__all__ = [
    "OVERFIT_OPTIMISERS",
    "ColorizationSnapshots",
    "OverfitRun",
    "StoredBytesTrainer",
    "StoredTargetLoss",
    "SubsetLoss",
    "TrainConfig",
    "TrainResult",
    "class_weights_for",
    "colorizer_of",
    "compile_colorizer",
    "continues",
    "distribution_scope",
    "micro_batching",
    "overfit_runs",
    "overfit_summary",
    "keeps_resident",
    "precision_policy",
    "resolve_precision",
    "run_identity",
    "train",
]


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    image_size: int = 224
    batch_size: int = 32
    epochs: int = 30
    steps_per_epoch: int | None = None  # None: one pass over the training images
    max_micro_batch: int | None = None  # larger batches are accumulated from micro-batches
    learning_rate: float = 1e-3  # the report's
    clipnorm: float | None = 1.0  # None: the report's plain Adam (can get stuck, notebook 05)
    precision: str = "auto"  # see PRECISIONS
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


def resolve_precision(precision: str = "auto") -> str:
    """``auto`` -> mixed_bfloat16 (GPU with compute capability >= 8), mixed_float16 (older
    GPU) or float32 (no GPU). Other values are checked and returned."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {PRECISIONS}.")
    if precision != "auto":
        return precision
    capability = _gpu_compute_capability()
    if capability is None:
        return "float32"
    return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16"


def _gpu_compute_capability() -> tuple[int, int] | None:
    if not visible_gpus():
        return None
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            gpu = next(d for d in jax.devices() if d.platform == "gpu")
            return tuple(int(part) for part in str(gpu.compute_capability).split(".")[:2])
        if backend == "tensorflow":
            import tensorflow as tf

            details = tf.config.experimental.get_device_details(
                tf.config.list_physical_devices("GPU")[0])
            return tuple(details.get("compute_capability", (7, 0)))
        if backend == "torch":
            import torch

            return tuple(torch.cuda.get_device_capability(0))
    except Exception as error:  # unknown GPU: the safe choice
        warnings.warn(f"could not read the GPU's compute capability ({error}); using "
                      "mixed_float16", stacklevel=2)
    return (7, 0)


@contextlib.contextmanager
def precision_policy(policy: str):
    """Layers built inside get ``policy``; the previous global policy is restored after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)


def distribution_plan(gpus: int, backend: str) -> str:
    """What :func:`distribution_scope` does with ``gpus`` visible GPUs on ``backend``."""
    if gpus <= 1:
        return "single device"
    return {"tensorflow": f"tf.distribute.MirroredStrategy over {gpus} GPUs",
            "jax": f"keras.distribution.DataParallel over {gpus} GPUs"}.get(
        backend, f"single device ({backend} has no data parallelism here)")


@contextlib.contextmanager
def distribution_scope(gpus: int | None = None):
    """Data parallelism over every visible GPU (or nothing with one); yields its description."""
    gpus = visible_gpus() if gpus is None else gpus
    backend = keras.backend.backend()
    plan = distribution_plan(gpus, backend)
    if plan.startswith("tf.distribute"):
        import tensorflow as tf  # only under the TensorFlow backend, never in the model

        with tf.distribute.MirroredStrategy().scope():
            yield plan
    elif plan.startswith("keras.distribution"):
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        try:
            yield plan
        finally:
            keras.distribution.set_distribution(previous)
    else:
        yield plan


def micro_batching(batch_size: int, max_micro_batch: int | None) -> tuple[int, int]:
    """(micro-batch, accumulation steps) with micro * steps == batch_size exactly."""
    if max_micro_batch is None or batch_size <= max_micro_batch:
        return batch_size, 1
    steps = -(-batch_size // max_micro_batch)
    while batch_size % steps:
        steps += 1
    return batch_size // steps, steps


# --- the stored bytes, turned into the network's ranges inside the step ----------------------


def flip_where(images, flags):
    """Each image (N, H, W, C) mirrored left-right where its flag (N,) is set."""
    flags = ops.reshape(ops.cast(flags, "bool"), (-1, 1, 1, 1))
    return ops.where(flags, ops.flip(images, axis=2), images)


class StoredBytesTrainer(keras.Model):
    """The model :func:`train` fits: ``colorizer`` fed what the prepared set stores.

    Its inputs are a feeder's ``packed=True`` batches: L as stored (uint8, steps of 100/255),
    the embedding, and a flip flag an image (uint8); its targets are the stored int8 a,b
    (:class:`StoredTargetLoss`). L goes to the network's range here, in ``keras.ops``, so it
    runs in the compiled step on whichever backend and device. A flagged image is mirrored
    on its way in and its prediction mirrored back: the loss, a mean over pixels, is then
    exactly the mirrored pair's, and the targets need no flip. It holds no weights of its
    own; :func:`colorizer_of` gives the colorizer, which is what is saved and loaded.

    With ``resident=(stored L, stored a,b, embeddings)`` of the whole prepared set, those are
    copied to the device once (non-trainable variables) and the inputs are only a feeder's
    ``resident=True`` batches, (indices, flip flags): the step gathers the images there and
    adds the colorizer's loss itself (``add_loss``; compile it without a loss).
    """

    def __init__(self, colorizer: keras.Model, resident=None, **kwargs):
        super().__init__(**kwargs)
        self.colorizer = colorizer
        self.resident = resident is not None
        # Nothing of its own to build (the colorizer is built): said so, Keras traces the
        # training step once, not once more to build it.
        self.built = True
        if self.resident:
            stored_l, stored_ab, embeddings = resident
            self.stored_l = keras.Variable(np.asarray(stored_l), dtype="uint8",
                                           trainable=False, name="stored_l")
            self.stored_ab = keras.Variable(np.asarray(stored_ab), dtype="int8",
                                            trainable=False, name="stored_ab")
            self.stored_embeddings = keras.Variable(np.asarray(embeddings, np.float32),
                                                    trainable=False, name="embeddings")

    def call(self, inputs, training=False):
        if self.resident:
            indices, flips = inputs
            stored_l = ops.take(self.stored_l, indices, axis=0)
            embedding = ops.take(self.stored_embeddings, indices, axis=0)
        else:
            stored_l, embedding, flips = inputs
        lightness = ops.cast(stored_l, "float32") * (color.L_MAX / 255.0 / color.L_SCALE) - 1.0
        predicted = self.colorizer([flip_where(lightness, flips), embedding], training=training)
        predicted = flip_where(predicted, flips)
        if self.resident:
            target = ops.cast(ops.take(self.stored_ab, indices, axis=0), "float32")
            self.add_loss(self.colorizer.loss(target / color.AB_SCALE, predicted))
        return predicted


class StoredTargetLoss(keras.losses.Loss):
    """``loss`` (the colorizer's) against the stored int8 a,b, scaled inside the step."""

    def __init__(self, loss, name="stored_target_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = loss

    def call(self, y_true, y_pred):
        return self.loss(ops.cast(y_true, "float32") / color.AB_SCALE, y_pred)


def stored_bytes_trainer(colorizer: keras.Model, jit_compile="auto",
                         resident=None) -> StoredBytesTrainer:
    """A :class:`StoredBytesTrainer` around a compiled ``colorizer``, compiled with the same
    optimizer object: it updates the colorizer's own variables, so the colorizer, saved,
    carries the optimizer's state (a checkpoint resumes; :func:`_load_newest_intact`)."""
    trainer = StoredBytesTrainer(colorizer, resident)
    trainer.compile(optimizer=colorizer.optimizer, jit_compile=jit_compile,
                    loss=None if resident is not None else StoredTargetLoss(colorizer.loss))
    return trainer


RESIDENT_FRACTION = 0.25  # of the accelerator's memory, at most, for the resident set


def accelerator_bytes() -> int | None:
    """The first GPU's memory as the backend reports it (JAX), else None."""
    if keras.backend.backend() != "jax" or not visible_gpus():
        return None  # TensorFlow reports no total; a CPU is no accelerator
    import jax

    gpu = next(device for device in jax.devices() if device.platform == "gpu")
    try:
        return int(gpu.memory_stats()["bytes_limit"])
    except (KeyError, TypeError, AttributeError, RuntimeError):
        return None


def resident_bytes(data: PortraitData) -> int:
    """What keeping ``data``'s prepared set and embeddings on the accelerator takes."""
    return int(data.prepared.packed_l.nbytes + data.prepared.packed_ab.nbytes
               + np.asarray(data.embeddings).nbytes)


def keeps_resident(data: PortraitData, resident, config: TrainConfig) -> bool:
    """``resident`` True / False, or "auto": on the accelerator when the set takes at most
    :data:`RESIDENT_FRACTION` of its memory (and the feeder need not zoom on the host)."""
    if resident not in (True, False, "auto"):
        raise ValueError(f"resident must be True, False or 'auto', got {resident!r}.")
    if config.max_zoom > 1:
        if resident is True:
            raise ValueError("the zoom is done on the host: resident=True needs max_zoom=1.")
        return False
    if resident != "auto":
        return resident
    memory = accelerator_bytes()
    return memory is not None and resident_bytes(data) <= RESIDENT_FRACTION * memory


def colorizer_of(model: keras.Model) -> keras.Model:
    """The colorizer in a callback's ``self.model`` (the :class:`StoredBytesTrainer` that
    :func:`train` fits), or ``model`` itself when it is a colorizer."""
    return getattr(model, "colorizer", model)


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


class _RunRecorder(keras.callbacks.Callback):
    """Times each epoch, then checkpoints model + optimizer, the state and the CSV log."""

    def __init__(self, run_dir: Path, state: dict, images_per_epoch: int,
                 keep_checkpoints: int = KEEP_CHECKPOINTS, last_epoch: int | None = None):
        super().__init__()
        self.run_dir, self.state, self.images_per_epoch = run_dir, state, images_per_epoch
        self.keep_checkpoints = keep_checkpoints
        self.last_epoch = last_epoch  # set: checkpoint only then (the epochs before are kept
        # in memory and written with it; a run cut short before it starts over)
        self._start = self._train_end = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_end = time.perf_counter(), None

    def on_test_begin(self, logs=None):  # validation inside fit: the training part is over
        if self._start is not None and self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        train_seconds = (self._train_end or time.perf_counter()) - self._start
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
               "train_seconds": train_seconds,
               "images_per_second": self.images_per_epoch / train_seconds}
        row.pop("learning_rate", None)
        self.state["history"].append(row)
        if self.last_epoch is not None and epoch + 1 < self.last_epoch:
            return
        checkpoint = _checkpoint_name(epoch + 1)
        partial = self.run_dir / "checkpoint.partial.keras"
        colorizer_of(self.model).save(partial)  # with the optimizer's state, shared
        os.replace(partial, self.run_dir / checkpoint)
        previous = self.state["checkpoints"]
        kept = [*(name for name in previous if name != checkpoint), checkpoint]
        self.state.update(epochs_done=epoch + 1, checkpoint=checkpoint,
                          checkpoints=kept[-self.keep_checkpoints:])
        _write_json_atomic(self.run_dir / STATE_FILE, self.state)
        # Those no longer referred to; also one left by a crash between these two steps.
        for path in self.run_dir.glob("checkpoint-epoch*.keras"):
            if path.name not in self.state["checkpoints"]:
                path.unlink(missing_ok=True)
        _write_csv(self.run_dir / "log.csv", self.state["history"])


def _checkpoint_name(epoch: int) -> str:
    return f"checkpoint-epoch{epoch:03d}.keras"


def _write_json_atomic(path: Path, value) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(value, indent=1))
    os.replace(partial, path)


def _write_csv(path: Path, history: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in history for key in row))
    partial = path.with_suffix(".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(history)
    os.replace(partial, path)


# --- the run folder's state ----------------------------------------------------------------


def _run_files(run_dir: Path) -> list[str]:
    """What of a koala run ``run_dir`` holds (the scratch ``*.partial`` files left out)."""
    found = sorted(path.name for path in run_dir.glob("checkpoint-*.keras"))
    found += [name for name in ("log.csv",) if (run_dir / name).is_file()]
    return found + (["samples/"] if (run_dir / "samples").is_dir() else [])


def _read_state(run_dir: Path) -> dict | None:
    """``run_dir``'s state, checked against its checkpoints; None for a folder without a run.

    Anything doubtful raises before a file is written: run files without a state (it was
    deleted, so which run they are and how far it got is unknown), or a state that is
    damaged or disagrees with the checkpoints (resuming from it would train the wrong epochs
    or none, silently).
    """
    path = run_dir / STATE_FILE
    if not path.is_file():
        found = _run_files(run_dir)
        if found:
            raise FileExistsError(
                f"{run_dir} holds files of a training run ({', '.join(found)}) but no "
                f"{STATE_FILE}, which says what run they belong to and how far it got. They "
                "are left untouched: choose another run_dir, or delete the folder "
                f"{run_dir} to start over there.")
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError: a file cut short
        problem = f"it is not valid JSON ({error}); it was probably cut short"
    else:
        problem = _state_problem(state, run_dir)
    if problem:
        raise ValueError(f"{path} cannot be resumed from: {problem}. Nothing was changed. "
                         f"To start this run over, delete the folder {run_dir}; to keep it, "
                         f"restore {STATE_FILE} or the checkpoint from a backup.")
    if "checkpoints" not in state:  # written before several checkpoints were kept
        state["checkpoints"] = [state["checkpoint"]] if state["checkpoint"] else []
    return state


def _state_problem(state, run_dir: Path) -> str | None:
    """What is wrong with a state read from ``run_dir`` (None: nothing)."""
    if not isinstance(state, dict):
        return f"it holds a JSON {type(state).__name__}, not an object"
    expected = {"identity": ((dict,), "an object"), "epochs_done": ((int,), "a whole number"),
                "checkpoint": ((str, type(None)), "a file name or null"),
                "history": ((list,), "a list"), "checkpoints": ((list,), "a list")}
    for key, (kinds, described) in expected.items():
        if key == "checkpoints" and key not in state:  # the previous version had none
            continue
        if key not in state:
            return f"the entry {key!r} is missing"
        if not isinstance(state[key], kinds) or isinstance(state[key], bool):
            return f"{key!r} is {state[key]!r}, not {described}"
    done = state["epochs_done"]
    if done < 0:
        return f"epochs_done is {done}"
    if not all(isinstance(row, dict) and isinstance(row.get("epoch"), int)
               for row in state["history"]):
        return "the history has rows without an epoch number"
    trained = [row["epoch"] for row in state["history"] if row["epoch"] >= 1]
    if trained != list(range(1, done + 1)):
        return f"epochs_done is {done} but the history holds the epochs {trained}"
    newest = _checkpoint_name(done) if done else None
    if state["checkpoint"] != newest:
        return (f"epochs_done is {done} but the checkpoint is {state['checkpoint']!r}, "
                f"not {newest!r}")
    kept = state.get("checkpoints", [newest] if newest else [])
    if not all(isinstance(name, str) and CHECKPOINT_NAME.fullmatch(name) for name in kept):
        return f"'checkpoints' is {kept!r}, not a list of checkpoint file names"
    epochs = [int(CHECKPOINT_NAME.fullmatch(name)[1]) for name in kept]
    if kept[-1:] != ([newest] if newest else []) or epochs != sorted(set(epochs)):
        return f"'checkpoints' {kept} does not end with the checkpoint {newest!r}, in order"
    if newest and not (run_dir / newest).is_file():
        return f"its checkpoint {run_dir / newest} is missing"
    return None


def _identity_differences(saved: dict, now: dict) -> dict:
    """The settings in which two runs differ, (saved, now) by name. The number of epochs is
    left out: asking a run for more epochs extends it, it does not make it another run."""
    defaults = asdict(TrainConfig())

    def flat(identity):
        values = {key: value for key, value in identity.items() if key != "config"}
        config = identity.get("config")
        if not isinstance(config, dict):
            return {**values, "config": config}
        # A setting added since the run was saved counts as its default (head, ...).
        config = {**{key: defaults[key] for key in defaults.keys() - config.keys()}, **config}
        return {**values, **{f"config.{key}": value for key, value in config.items()
                             if key != "epochs"}}

    saved, now = flat(saved), flat(now)
    return {key: (saved.get(key), now.get(key)) for key in dict.fromkeys([*now, *saved])
            if saved.get(key) != now.get(key)}


def _load_newest_intact(run_dir: Path, state: dict) -> tuple[keras.Model, dict]:
    """The newest kept checkpoint that loads, and the state rolled back to it if that is not
    the newest (a copy cut off by a disconnect or a full disk): one epoch is lost, not the
    run. The epochs after it are trained again, on the same batches (seed and epoch)."""
    damaged = []
    for name in reversed(state["checkpoints"]):
        path = run_dir / name
        try:
            model = keras.saving.load_model(path, compile=True, safe_mode=True)
        except Exception as error:  # a cut-off .keras zip fails in many ways
            if _archive_is_whole(path):  # then it is not damage: memory, versions, a disk
                raise RuntimeError(
                    f"cannot load the checkpoint {path}, although the file is whole "
                    f"({type(error).__name__}: {str(error)[:300]}). Nothing was changed: "
                    "fix the cause (memory, the Keras version that wrote it) and run again."
                ) from error
            damaged.append(f"{path} ({type(error).__name__}: {str(error)[:200]})")
            continue
        if damaged:
            warnings.warn(f"damaged checkpoint (cut short?), it cannot be loaded: "
                          f"{'; '.join(damaged)}. Resuming from {path} instead: the epochs "
                          "after it are trained again.", stacklevel=3)
            state = _roll_back(run_dir, state, name)
        return model, state
    raise ValueError(f"no checkpoint of the run in {run_dir} can be loaded (damaged?): "
                     f"{'; '.join(damaged)}. To start this run over, delete the folder "
                     f"{run_dir}.")


def _archive_is_whole(path: Path) -> bool:
    """A .keras file is a zip: whole when every member reads back with its checksum."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False


def _roll_back(run_dir: Path, state: dict, checkpoint: str) -> dict:
    """``state`` as it was when ``checkpoint`` was written, saved (state.json, log.csv)."""
    epoch = int(CHECKPOINT_NAME.fullmatch(checkpoint)[1])
    kept = state["checkpoints"]
    state = {**state, "epochs_done": epoch, "checkpoint": checkpoint,
             "checkpoints": kept[: kept.index(checkpoint) + 1],
             "history": [row for row in state["history"] if row["epoch"] <= epoch]}
    _write_json_atomic(run_dir / STATE_FILE, state)
    _write_csv(run_dir / "log.csv", state["history"])
    return state


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
    aside, see :func:`_identity_differences`)."""
    train_indices = data.indices("train") if train_indices is None else train_indices
    val_indices = data.indices("val") if val_indices is None else val_indices
    return {
        "config": asdict(config), "data": data.fingerprint(),
        "train_indices": hashlib.sha256(np.asarray(train_indices, np.int64)).hexdigest()[:16],
        "val_indices": hashlib.sha256(np.asarray(val_indices, np.int64)).hexdigest()[:16],
    }


def continues(run_dir, data: PortraitData, config: TrainConfig, train_indices=None,
              val_indices=None) -> bool:
    """Whether ``run_dir`` holds a run that training ``config`` on ``data`` would continue
    (the same run, perhaps with fewer epochs); False when it holds none or another."""
    try:
        state = _read_state(Path(run_dir)) if Path(run_dir, STATE_FILE).is_file() else None
    except (ValueError, OSError):  # a damaged run is not continued (train() says why)
        return False
    return state is not None and not _identity_differences(
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
    if config.image_size != data.image_size:
        raise ValueError(f"the data was prepared at {data.image_size}px but the config asks "
                         f"for {config.image_size}px.")
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
    state = _read_state(run_dir)
    if state is not None:
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a run ({state['epochs_done']} "
                                  "epochs): choose another run_dir, pass resume=True to "
                                  f"continue it, or delete the folder {run_dir} to start over.")
        different = _identity_differences(state["identity"], identity)
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
    on_device = keeps_resident(data, resident, config)
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
            model, state = _load_newest_intact(run_dir, state)
            resumed_from = state["epochs_done"]
        else:
            model = build_colorizer(config.image_size, data.embeddings.shape[-1],
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
        recorder = _RunRecorder(run_dir, state, images_per_epoch, keep_checkpoints,
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



# --- over-fitting one photo (notebook 05) ----------------------------------------------------

# A tanh output beyond +-0.99 passes back under 2% of its gradient (d tanh = 1 - y^2).
SATURATION = 0.99
# The optimisers notebook 05 compares on one photo: the report's, and two ways to tame it.
OVERFIT_OPTIMISERS = {
    "Adam 1e-3 (report)": {"learning_rate": 1e-3, "clipnorm": None},
    "Adam 1e-3, clipnorm 1": {"learning_rate": 1e-3, "clipnorm": 1.0},
    "Adam 1e-4": {"learning_rate": 1e-4, "clipnorm": None},
}


@dataclass(frozen=True)
class OverfitRun:
    """One run of Adam on one photo."""

    optimiser: str  # a key of the optimisers compared
    standardize_embedding: bool
    seed: int
    losses: np.ndarray  # the loss of every step (computed before its update)
    prediction: np.ndarray  # the a,b after the last step, H x W x 2

    @property
    def saturated(self) -> float:
        """The fraction of a,b outputs beyond +-SATURATION after the last step."""
        return float((np.abs(self.prediction) > SATURATION).mean())

    @property
    def spiked(self) -> bool:
        """Whether the loss, at some step, rose over 10% above where it started."""
        return bool(self.losses.max() > 1.1 * self.losses[0])

    @property
    def stopped_improving(self) -> int | None:
        """The step (counted from 1) from which the best loss so far stayed within 2% of
        the run's best, or None if that still fell by more than 2% over the last tenth of
        the run (10 steps at least): :func:`koala_lib.losses.steps_until_plateau`."""
        index = steps_until_plateau(self.losses, window=max(10, len(self.losses) // 10),
                                    min_improvement=0.02)
        return None if index == len(self.losses) else index + 1


def _reset_adam(optimizer, learning_rate: float) -> None:
    """A used Adam back to a fresh one's state: step 0, no moments, ``learning_rate``."""
    for variable in optimizer.variables:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    optimizer.learning_rate = learning_rate


def overfit_runs(scaled_l, scaled_ab, embedding, steps: int, seeds=(42,),
                 optimisers=None, fusions=(False, True), progress: bool = False
                 ) -> list[OverfitRun]:
    """Adam on one photo (``scaled_l`` H x W x 1, ``scaled_ab`` H x W x 2, ``embedding`` of
    D values) for ``steps`` steps, once for every optimiser x fusion x seed.

    ``optimisers`` maps names to Adam's ``learning_rate`` and ``clipnorm`` (default
    :data:`OVERFIT_OPTIMISERS`); ``fusions`` are values of ``standardize_embedding``. A run
    starts from the weights :func:`build_colorizer` makes after
    ``keras.utils.set_random_seed(seed)``, and a fresh Adam: the same run as a newly built
    and compiled model. The models are reused across runs, one per fusion and clipnorm, so
    the training step is traced four times rather than once a run. ``progress``: a bar of
    the steps of all runs (minutes at 224x224 on a T4).
    """
    from tqdm.auto import tqdm

    optimisers = OVERFIT_OPTIMISERS if optimisers is None else optimisers
    x = [np.asarray(scaled_l, "float32")[None],
         np.asarray(embedding, "float32").reshape(1, -1)]
    y = np.asarray(scaled_ab, "float32")[None]
    size, dim = y.shape[1:3], x[1].shape[-1]
    initial = {}
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        initial[seed] = build_colorizer(size, dim).get_weights()
    models, runs = {}, []
    bar = tqdm(total=len(optimisers) * len(fusions) * len(seeds) * steps, unit="step",
               desc="over-fitting runs", disable=not progress)
    for name, options in optimisers.items():
        learning_rate, clipnorm = options["learning_rate"], options.get("clipnorm")
        for standardize in fusions:
            if (standardize, clipnorm) not in models:
                models[standardize, clipnorm] = build_colorizer(
                    size, dim, standardize_embedding=standardize)
                models[standardize, clipnorm].compile(
                    keras.optimizers.Adam(learning_rate, clipnorm=clipnorm), loss=report_mse)
            colorizer = models[standardize, clipnorm]
            for seed in seeds:
                colorizer.set_weights(initial[seed])
                _reset_adam(colorizer.optimizer, learning_rate)
                losses = [float(colorizer.train_on_batch(x, y)) for _ in range(steps)]
                bar.update(steps)
                prediction = keras.ops.convert_to_numpy(colorizer(x, training=False))[0]
                runs.append(OverfitRun(name, standardize, seed, np.array(losses), prediction))
    bar.close()
    return runs


def overfit_summary(runs: list[OverfitRun]) -> list[dict]:
    """One row per optimiser and fusion: the median best and final loss over its seeds, in
    how many seeds the loss spiked, and each seed's fraction of saturated outputs at the
    end and the step it stopped improving (None: it had not)."""
    groups: dict[tuple, list[OverfitRun]] = {}
    for run in runs:
        groups.setdefault((run.optimiser, run.standardize_embedding), []).append(run)
    return [{"optimiser": optimiser,
             "logits": "standardised" if standardize else "raw",
             "seeds": len(group),
             "best loss": float(np.median([run.losses.min() for run in group])),
             "final loss": float(np.median([run.losses[-1] for run in group])),
             "spiked": sum(run.spiked for run in group),
             "saturated at the end": [run.saturated for run in group],
             "stopped improving at step": [run.stopped_improving for run in group]}
            for (optimiser, standardize), group in groups.items()]
