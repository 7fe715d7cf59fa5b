"""Training: the ci profile learns, resume matches an uninterrupted run, Table 1 fills.

These tests train on real portraits (the shared folder) at 32x32, so they take seconds.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import small_config

from koala_lib import train, trainer


def test_ci_profile_lowers_the_held_out_loss(ci_data, tmp_path):
    result = train.train(ci_data, small_config(), tmp_path / "run", verbose=0)
    start, end = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert result.history[0]["epoch"] == 0 and result.epochs_done == 3
    assert end < 0.8 * start, (start, end)
    assert np.isfinite(result.images_per_second) and result.images_per_second > 0
    files = {path.name for path in (tmp_path / "run").iterdir()}
    assert {"state.json", "log.csv", "checkpoint-epoch003.keras", "samples"} <= files
    # The last two checkpoints are kept (a damaged newest one still leaves the one before).
    assert sorted(name for name in files if name.startswith("checkpoint")) == [
        "checkpoint-epoch002.keras", "checkpoint-epoch003.keras"]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["checkpoints"] == ["checkpoint-epoch002.keras", "checkpoint-epoch003.keras"]
    assert [path.name for path in result.snapshots] == [
        "epoch_001.png", "epoch_002.png", "epoch_003.png"]
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,") and len(log) == 1 + 4  # header, epochs 0..3


def test_classification_head_trains_in_the_ci_profile_and_lowers_its_loss(ci_data, tmp_path):
    from koala_lib.model import colorizer_head

    config = small_config(head="classification", snapshot_images=0)
    result = train.train(ci_data, config, tmp_path / "run", verbose=0)
    start, end = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert colorizer_head(result.model) == "classification"
    assert end < 0.8 * start, (start, end)
    assert result.history[-1]["loss"] < result.history[1]["loss"]
    # The checkpoint holds the rebalanced loss with its weights: the run extends.
    longer = train.train(ci_data, replace(config, epochs=4), tmp_path / "run", verbose=0)
    assert longer.resumed_from == 3 and longer.epochs_done == 4
    assert type(longer.model.loss).__name__ == "SoftEncodedCrossEntropy"
    weights = np.array(longer.model.loss.class_weights)
    np.testing.assert_allclose(weights, train.class_weights_for(ci_data, ci_data.indices("train")),
                               rtol=1e-6)


class Interrupt(Exception):
    pass


class InterruptAt(keras.callbacks.Callback):
    """Raises in the middle of an epoch, like a Colab disconnect."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise Interrupt


def test_interrupted_run_resumes_to_the_same_end(ci_data, tmp_path):
    config = small_config()
    subset = ci_data.indices("train")[:64]
    whole = train.train(ci_data, config, tmp_path / "whole", train_indices=subset, verbose=0)

    with pytest.raises(Interrupt):
        train.train(ci_data, config, tmp_path / "cut", train_indices=subset, verbose=0,
                    callbacks=[InterruptAt(epoch=1, batch=1)])
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert state["epochs_done"] == 1  # the second epoch was lost, the first checkpointed
    resumed = train.train(ci_data, config, tmp_path / "cut", train_indices=subset, verbose=0)

    assert resumed.resumed_from == 1 and resumed.epochs_done == whole.epochs_done == 3
    np.testing.assert_allclose(resumed.curve("loss")[1:], whole.curve("loss")[1:], rtol=1e-3)
    np.testing.assert_allclose(resumed.curve("val_loss"), whole.curve("val_loss"), rtol=1e-3)
    for mine, theirs in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-4)
    # Running it again finds the run finished and trains nothing.
    again = train.train(ci_data, config, tmp_path / "cut", train_indices=subset, verbose=0)
    assert again.epochs_done == 3 and len(again.history) == len(resumed.history)


def test_a_run_folder_is_never_mixed_with_another_run(ci_data, tmp_path):
    config = small_config(epochs=1, snapshot_images=0)
    subset = ci_data.indices("train")[:16]
    train.train(ci_data, config, tmp_path / "run", train_indices=subset, verbose=0)
    with pytest.raises(ValueError, match="holds a different run"):
        train.train(ci_data, replace(config, learning_rate=1e-4), tmp_path / "run",
                    train_indices=subset, verbose=0)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train.train(ci_data, config, tmp_path / "run", train_indices=subset, resume=False,
                    verbose=0)


# --- damaged or reused run folders ---------------------------------------------------------

TINY = dict(epochs=2, steps_per_epoch=2, batch_size=8, snapshot_images=0)


@pytest.fixture(scope="module")
def finished_run(ci_data, tmp_path_factory):
    """A finished 2-epoch run (uninterrupted): tests copy its folder and damage the copy."""
    config = small_config(**TINY)
    subset = ci_data.indices("train")[:16]
    folder = tmp_path_factory.mktemp("finished") / "run"
    result = train.train(ci_data, config, folder, train_indices=subset, verbose=0)
    return folder, config, subset, result


def copy_run(finished_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished_run[0], folder)
    return folder


def folder_contents(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def assert_same_end(result, uninterrupted):
    assert result.epochs_done == uninterrupted.epochs_done
    np.testing.assert_allclose(result.curve("loss")[1:], uninterrupted.curve("loss")[1:],
                               rtol=1e-3)
    np.testing.assert_allclose(result.curve("val_loss"), uninterrupted.curve("val_loss"),
                               rtol=1e-3)
    for mine, theirs in zip(result.model.get_weights(), uninterrupted.model.get_weights(),
                            strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-4)


@pytest.mark.parametrize("leftover", ["checkpoint-epoch004.keras", "log.csv",
                                      "samples/epoch_004.png"])
def test_a_run_folder_without_its_state_is_refused_not_overwritten(ci_data, tmp_path,
                                                                   leftover):
    folder = tmp_path / "run"
    (folder / leftover).parent.mkdir(parents=True, exist_ok=True)
    (folder / leftover).write_bytes(b"four epochs of someone's work")
    before = folder_contents(folder)
    with pytest.raises(FileExistsError) as refused:
        train.train(ci_data, small_config(epochs=1, steps_per_epoch=1, snapshot_images=0),
                    folder, train_indices=ci_data.indices("train")[:16], verbose=0)
    message = str(refused.value)
    assert str(folder) in message and "state.json" in message
    assert leftover.split("/")[0] in message
    assert "choose another run_dir" in message and "delete" in message
    assert folder_contents(folder) == before


def test_a_second_training_on_the_same_run_folder_is_refused_naming_the_holder(ci_data,
                                                                                tmp_path):
    import socket
    import subprocess
    import sys

    from koala_lib import files

    folder = tmp_path / "run"
    folder.mkdir()
    config = small_config(epochs=1, steps_per_epoch=1, snapshot_images=0)
    indices = ci_data.indices("train")[:16]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:  # another training, still running on this machine, holds the folder
        (folder / files.LOCK_FILE).write_text(json.dumps({
            "host": socket.gethostname(), "pid": other.pid, "work": "a training run",
            "started": "2026-12-07 10:00:00"}))
        with pytest.raises(files.FolderBusyError,
                           match=f"a training run started 2026-12-07 10:00:00 by process "
                                 f"{other.pid} on {socket.gethostname()}"):
            train.train(ci_data, config, folder, train_indices=indices, verbose=0)
        assert sorted(path.name for path in folder.iterdir()) == [files.LOCK_FILE]
    finally:
        other.kill()
        other.wait()
    # Its process gone, the lock is stale: this training takes it, and leaves none behind.
    result = train.train(ci_data, config, folder, train_indices=indices, verbose=0)
    assert result.epochs_done == 1 and not (folder / files.LOCK_FILE).exists()


def damage_state(kind, folder):
    path = folder / "state.json"
    text = path.read_text()
    state = json.loads(text)
    if kind == "truncated":
        path.write_text(text[: len(text) // 2])
        return
    if kind == "checkpoint missing":
        (folder / state["checkpoint"]).unlink()
        return
    value = {
        "a list": [],
        "no history": {k: v for k, v in state.items() if k != "history"},
        "no identity": {k: v for k, v in state.items() if k != "identity"},
        "epochs as text": {**state, "epochs_done": "2"},
        "negative epochs": {**state, "epochs_done": -1},
        "more epochs than history": {**state, "epochs_done": 99},
        "history cut short": {**state, "history": state["history"][:-1]},
        "checkpoint of another epoch": {**state, "checkpoint": "checkpoint-epoch001.keras"},
        "checkpoint not a name": {**state, "checkpoint": 2},
        "checkpoints not a list": {**state, "checkpoints": "checkpoint-epoch002.keras"},
    }[kind]
    path.write_text(json.dumps(value))


@pytest.mark.parametrize("kind", [
    "truncated", "a list", "no history", "no identity", "epochs as text", "negative epochs",
    "more epochs than history", "history cut short", "checkpoint of another epoch",
    "checkpoint not a name", "checkpoints not a list", "checkpoint missing"])
def test_a_damaged_state_is_refused_naming_the_file_and_what_to_do(finished_run, tmp_path,
                                                                   ci_data, kind):
    _, config, subset, _ = finished_run
    folder = copy_run(finished_run, tmp_path)
    damage_state(kind, folder)
    before = folder_contents(folder)
    with pytest.raises(ValueError) as refused:
        train.train(ci_data, config, folder, train_indices=subset, verbose=0)
    message = str(refused.value)
    assert str(folder / "state.json") in message, message
    assert f"delete the folder {folder}" in message, message
    assert folder_contents(folder) == before  # a damaged state never leads to overwriting


def test_a_damaged_last_checkpoint_falls_back_to_the_one_before(finished_run, tmp_path,
                                                                ci_data):
    _, config, subset, uninterrupted = finished_run
    folder = copy_run(finished_run, tmp_path)
    newest = folder / "checkpoint-epoch002.keras"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a cut-off copy
    with pytest.warns(UserWarning, match=re.escape(str(newest))):
        resumed = train.train(ci_data, config, folder, train_indices=subset, verbose=0)
    assert resumed.resumed_from == 1  # epoch 2 was trained again, from epoch 1's checkpoint
    assert_same_end(resumed, uninterrupted)
    state = json.loads((folder / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["checkpoint"] == newest.name
    assert [row["epoch"] for row in state["history"]] == [0, 1, 2]
    assert len((folder / "log.csv").read_text().splitlines()) == 1 + 3
    train.train(ci_data, config, folder, train_indices=subset, verbose=0)  # loads, intact


def test_a_run_whose_checkpoints_are_all_damaged_is_refused(finished_run, tmp_path, ci_data):
    _, config, subset, _ = finished_run
    folder = copy_run(finished_run, tmp_path)
    for name in ("checkpoint-epoch001.keras", "checkpoint-epoch002.keras"):
        (folder / name).write_bytes(b"PK\x03\x04 cut off")
    before = folder_contents(folder)
    with pytest.raises(ValueError) as refused:
        train.train(ci_data, config, folder, train_indices=subset, verbose=0)
    message = str(refused.value)
    assert "checkpoint-epoch001.keras" in message and "checkpoint-epoch002.keras" in message
    assert f"delete the folder {folder}" in message, message
    assert folder_contents(folder) == before


def test_a_finished_run_can_be_extended_to_more_epochs(finished_run, tmp_path, ci_data,
                                                       capsys):
    _, config, subset, uninterrupted = finished_run
    folder = tmp_path / "run"
    first = train.train(ci_data, replace(config, epochs=1), folder, train_indices=subset,
                        verbose=0)
    assert first.epochs_done == 1
    # A checkpoint no state refers to (a crash between writing the state and deleting it).
    shutil.copy(folder / "checkpoint-epoch001.keras", folder / "checkpoint-epoch009.keras")
    extended = train.train(ci_data, config, folder, train_indices=subset, verbose=0)
    assert extended.resumed_from == 1
    assert_same_end(extended, uninterrupted)
    assert sorted(path.name for path in folder.glob("checkpoint-*.keras")) == [
        "checkpoint-epoch001.keras", "checkpoint-epoch002.keras"]
    # Asking for fewer epochs than done returns the run as it is, and says so.
    fewer = train.train(ci_data, replace(config, epochs=1), folder, train_indices=subset,
                        verbose=1)
    assert fewer.epochs_done == 2 and len(fewer.history) == len(extended.history)
    assert "2 epochs, more than the 1 asked" in capsys.readouterr().out


def test_a_state_written_by_the_previous_version_still_resumes(finished_run, tmp_path,
                                                               ci_data):
    _, config, subset, _ = finished_run
    folder = copy_run(finished_run, tmp_path)
    state = json.loads((folder / "state.json").read_text())
    del state["checkpoints"]  # the previous version recorded only the newest checkpoint
    (folder / "state.json").write_text(json.dumps(state))
    again = train.train(ci_data, config, folder, train_indices=subset, verbose=0)
    assert again.epochs_done == again.resumed_from == 2


def test_a_run_saved_with_a_removed_setting_still_resumes(finished_run, tmp_path, ci_data):
    # Runs saved before the image size became the data's recorded it in their config.
    _, config, subset, _ = finished_run
    folder = copy_run(finished_run, tmp_path)
    state = json.loads((folder / "state.json").read_text())
    state["identity"]["config"]["image_size"] = ci_data.image_size
    (folder / "state.json").write_text(json.dumps(state))
    again = train.train(ci_data, config, folder, train_indices=subset, verbose=0)
    assert again.epochs_done == again.resumed_from == 2
    assert again.model.input_shape[0][1] == ci_data.image_size


def test_micro_batches_make_the_same_update_as_one_batch(ci_data, tmp_path):
    config = small_config(epochs=1, batch_size=8, steps_per_epoch=1, flip=False,
                          snapshot_images=0)
    subset = ci_data.indices("train")[:8]
    one = train.train(ci_data, config, tmp_path / "one", train_indices=subset, verbose=0)
    split = train.train(ci_data, replace(config, max_micro_batch=4), tmp_path / "split",
                        train_indices=subset, verbose=0)
    assert (one.accumulation_steps, split.accumulation_steps) == (1, 2)
    assert split.micro_batch == 4
    keras.utils.set_random_seed(config.seed)
    initial = train.build_colorizer(32).get_weights()  # the weights both runs started from
    moved = [np.abs(w - w0).mean() for w, w0 in zip(one.model.get_weights(), initial,
                                                     strict=True)]
    apart = [np.abs(a - b).mean() for a, b in zip(one.model.get_weights(),
                                                  split.model.get_weights(), strict=True)]
    assert sum(moved) > 0
    assert sum(apart) < 0.02 * sum(moved)


def test_float16_with_clipping_and_accumulation_resumes_to_the_uninterrupted_end(
        ci_data, tmp_path):
    # Colab's T4 trains in mixed_float16: loss scaling, clipnorm and micro-batches together,
    # then a disconnect and a resume. Tiny sizes, on a CPU: the same code path.
    config = small_config(precision="mixed_float16", clipnorm=1.0, batch_size=8,
                          max_micro_batch=4, snapshot_images=0)
    subset = ci_data.indices("train")[:32]
    whole = train.train(ci_data, config, tmp_path / "whole", train_indices=subset, verbose=0)
    with pytest.raises(Interrupt):
        train.train(ci_data, config, tmp_path / "cut", train_indices=subset, verbose=0,
                    callbacks=[InterruptAt(epoch=1, batch=1)])
    resumed = train.train(ci_data, config, tmp_path / "cut", train_indices=subset, verbose=0)

    assert whole.precision == resumed.precision == "mixed_float16"
    assert resumed.resumed_from == 1 and resumed.epochs_done == whole.epochs_done == 3
    for result in (whole, resumed):
        assert np.isfinite(result.curve("loss")[1:]).all()
        assert np.isfinite(result.curve("val_loss")).all()
    assert whole.curve("val_loss")[-1] < whole.curve("val_loss")[0]
    np.testing.assert_allclose(resumed.curve("val_loss"), whole.curve("val_loss"), rtol=1e-3)
    for mine, theirs in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-3)


def test_mixed_precision_keeps_the_output_in_float32(ci_data, tmp_path):
    config = small_config(epochs=1, steps_per_epoch=2, precision="mixed_bfloat16",
                          snapshot_images=0)
    result = train.train(ci_data, config, tmp_path / "bf16", verbose=0)
    assert result.precision == "mixed_bfloat16"
    conv = result.model.get_layer("encoder").get_layer("encoder_conv1")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert result.model.output.dtype == "float32"
    assert np.isfinite(result.history[-1]["loss"])
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_a_run_without_validation_images_warns(ci_data, tmp_path):
    subset = ci_data.indices("train")[:8]
    with pytest.warns(UserWarning, match="no validation images"):
        result = train.train(ci_data, small_config(**{**TINY, "epochs": 1}), tmp_path / "run",
                             train_indices=subset, val_indices=[], verbose=0)
    assert result.epochs_done == 1 and "val_loss" not in result.history[-1]


def test_a_whole_checkpoint_that_fails_to_load_is_not_taken_for_damage(finished_run, tmp_path,
                                                                       ci_data, monkeypatch):
    _, config, subset, _ = finished_run
    folder = copy_run(finished_run, tmp_path)
    before = folder_contents(folder)

    def out_of_memory(*args, **kwargs):
        raise MemoryError("not enough memory to load")

    monkeypatch.setattr(keras.saving, "load_model", out_of_memory)
    with pytest.raises(RuntimeError, match="although the file is whole.*Nothing was changed"):
        train.train(ci_data, small_config(**{**TINY, "epochs": 3}), folder,
                    train_indices=subset, verbose=0)
    assert folder_contents(folder) == before  # no roll-back: the newest epoch is kept


def test_weight_decay_uses_adamw_and_subset_loss_is_logged_each_epoch(ci_data, tmp_path):
    from koala_lib.model import build_colorizer

    config = small_config(weight_decay=0.01)
    model = build_colorizer(ci_data.image_size, ci_data.embeddings.shape[1])
    train.compile_colorizer(model, config)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert float(model.optimizer.weight_decay) == pytest.approx(0.01)
    train.compile_colorizer(model, small_config())
    assert type(model.optimizer) is keras.optimizers.Adam
    result = train.train(ci_data, small_config(epochs=2, snapshot_images=0, max_zoom=1.3),
                         tmp_path / "run", callbacks=[train.SubsetLoss(
                             ci_data, ci_data.indices("train")[:8])], verbose=0)
    losses = [row["train_subset_loss"] for row in result.history[1:]]
    assert len(losses) == 2 and all(np.isfinite(losses))
    # Measured on fixed images as they are: the same weights give the same number.
    again = train.SubsetLoss(ci_data, ci_data.indices("train")[:8])
    again.set_model(result.model)
    logs = {}
    again.on_epoch_end(1, logs)
    assert logs["train_subset_loss"] == pytest.approx(losses[-1], rel=1e-4)


@pytest.mark.parametrize("head", ["regression", "classification"])
def test_the_stored_bytes_trainer_has_the_float_batches_loss(ci_data, head):
    from koala_lib.data.feeder import ColorizationFeeder
    from koala_lib.model import build_colorizer

    config = small_config(head=head)
    indices = ci_data.indices("train")[:8]
    keras.utils.set_random_seed(0)
    colorizer = build_colorizer(ci_data.image_size, ci_data.embeddings.shape[1], head=head)
    train.compile_colorizer(colorizer, config, class_weights=train.class_weights_for(
        ci_data, indices) if head == "classification" else None)
    stepper = trainer.stored_bytes_trainer(colorizer)
    options = dict(batch_size=8, flip=True, seed=4, shuffle=False)
    floats = ColorizationFeeder(ci_data.prepared, ci_data.embeddings, indices, **options)
    stored = ColorizationFeeder(ci_data.prepared, ci_data.embeddings, indices, packed=True,
                                **options)
    assert 0 < stored[0][0][2].sum() < 8  # some images flipped, some not
    # (evaluate moves a PyDataset's epoch on, and with it the flips: alike in both)
    float_loss = float(colorizer.evaluate(floats, verbose=0))
    assert float(stepper.evaluate(stored, verbose=0)) == pytest.approx(float_loss, rel=1e-5)
    assert floats.epoch == stored.epoch > 0
    assert trainer.colorizer_of(stepper) is colorizer
    assert trainer.colorizer_of(colorizer) is colorizer


def test_a_resident_set_trains_the_same_run_as_the_host_path(ci_data, tmp_path):
    config = small_config(epochs=2, snapshot_images=0)
    subset = ci_data.indices("train")[:16]
    runs = {resident: train.train(ci_data, config, tmp_path / f"run-{resident}",
                                  train_indices=subset, verbose=0, tensorboard=False,
                                  resident=resident)
            for resident in (False, True)}
    assert not trainer.keeps_resident(ci_data, "auto", config.max_zoom)  # a CPU is no accelerator
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(runs[True].curve(key), runs[False].curve(key), rtol=1e-4)
    for host, device in zip(runs[False].model.get_weights(), runs[True].model.get_weights(),
                            strict=True):
        np.testing.assert_allclose(device, host, atol=1e-5)
    with pytest.raises(ValueError, match="max_zoom"):
        trainer.keeps_resident(ci_data, True, max_zoom=1.2)
