"""A training run's folder: checkpoints, its state, resuming.

After every epoch the model and its optimizer state go to ``run_dir/checkpoint-epochNNN.keras``;
the last two are kept (:data:`KEEP_CHECKPOINTS`), and ``run_dir/state.json`` (written whole
or not at all) records the epoch, the settings, the history and the kept checkpoints. A run
resumed from it ends where an uninterrupted run would: the feeder's order and flips depend
only on (seed, epoch). If the newest checkpoint cannot be loaded (a copy cut short), the one
before is used, with a warning. Nothing in a run folder is overwritten on doubt: a different
run, a ``state.json`` that is damaged or disagrees with the checkpoints, or run files without
a ``state.json`` are refused with the folder and what to do. ``log.csv`` is rewritten from
the checkpointed history each epoch, so it never disagrees with it.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import warnings
import zipfile
from pathlib import Path

import keras

from koala_lib import files
from koala_lib.trainer import colorizer_of

STATE_FILE = "state.json"
KEEP_CHECKPOINTS = 2  # the newest and the one before: a damaged newest does not lose the run
CHECKPOINT_NAME = re.compile(r"checkpoint-epoch(\d{3,})\.keras")

__all__ = ["CHECKPOINT_NAME", "KEEP_CHECKPOINTS", "STATE_FILE", "RunRecorder",
           "load_newest_intact", "read_state"]


class RunRecorder(keras.callbacks.Callback):
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
        # with the optimizer's state, shared; whole under its name or not there at all
        files.write_replacing(self.run_dir / checkpoint, colorizer_of(self.model).save)
        previous = self.state["checkpoints"]
        kept = [*(name for name in previous if name != checkpoint), checkpoint]
        self.state.update(epochs_done=epoch + 1, checkpoint=checkpoint,
                          checkpoints=kept[-self.keep_checkpoints:])
        _write_json(self.run_dir / STATE_FILE, self.state)
        # Those no longer referred to; also one left by a crash between these two steps.
        for path in self.run_dir.glob("checkpoint-epoch*.keras"):
            if path.name not in self.state["checkpoints"]:
                path.unlink(missing_ok=True)
        _write_csv(self.run_dir / "log.csv", self.state["history"])


def _checkpoint_name(epoch: int) -> str:
    return f"checkpoint-epoch{epoch:03d}.keras"


def _write_json(path: Path, value) -> None:
    files.write_replacing(path, json.dumps(value, indent=1))


def _write_csv(path: Path, history: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, list(dict.fromkeys(key for row in history for key in row)))
    writer.writeheader()
    writer.writerows(history)
    files.write_replacing(path, text.getvalue())


# --- the run folder's state ----------------------------------------------------------------


def _run_files(run_dir: Path) -> list[str]:
    """What of a koala run ``run_dir`` holds (the scratch ``*.partial`` files left out)."""
    found = sorted(path.name for path in run_dir.glob("checkpoint-*.keras"))
    found += [name for name in ("log.csv",) if (run_dir / name).is_file()]
    return found + (["samples/"] if (run_dir / "samples").is_dir() else [])


def read_state(run_dir: Path) -> dict | None:
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


def load_newest_intact(run_dir: Path, state: dict) -> tuple[keras.Model, dict]:
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
    _write_json(run_dir / STATE_FILE, state)
    _write_csv(run_dir / "log.csv", state["history"])
    return state
