"""Execute every notebook with papermill in the `ci` profile and check what it measured.

nbval (run by `make test` on notebooks/) compares the committed outputs of the cells marked
NBVAL_CHECK_OUTPUT; this test runs each notebook fresh, fails on any cell error, and checks
its numbers. To read them, it appends one cell to a copy of the notebook that records the
values named in RECORDED as JSON under build/results/: the notebooks themselves carry no
test harness.
"""

from __future__ import annotations

import json
import os
import shutil

import nbformat
import numpy as np
import papermill as pm
import pytest
from conftest import ROOT, portraits_dir

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BUILD = ROOT / "build"

# What each notebook records: keyword arguments of course.record_results, evaluated in the
# executed notebook's namespace by one cell that the test appends, so that the harness
# stays out of the teaching notebooks.
RECORDED = {
    "01_lab_color_space": """
        profile=settings.profile,
        portrait=portrait.name,
        red_lab=primary_lab[0],
        gray_max_l_change=l_change,
        gray_max_chroma=gray_chroma,
        float_round_trip_max_rgb_diff=float_max_diff,
        packed_lab_mean_delta_e=delta_e_8bit.mean(),
        n_mean_portraits=len(portraits),
        global_mean_ab=global_mean_ab,
        face_mean_ab=face_mean_ab,
        mean_pixel_chroma=mean_pixel_chroma,
        candidates=scores,
    """,
    "02_portrait_dataset": """
        profile=settings.profile,
        files=len(all_files),
        image_files=len(image_files),
        cleaned_files=len(files),
        cleaning=report.counts(),
        messy_reasons={item.path.name: item.reason for item in messy_report.skipped},
        messy_kept=sorted(path.name for path in messy_report.kept),
        mean_ab=mean_ab,
        warm_fraction=float(warm.mean()),
        split_sizes={name: len(paths) for name, paths in splits.items()},
        split_persons={name: len(p) for name, p in persons.items()},
        persons_in_two_splits=len(overlap),
        prepared_images=len(prepared),
        prepared_size=settings.prepared_size,
        cache_megabytes=megabytes,
        cache_reopen_seconds=second_seconds,
        feeder_batch_shapes=[list(batch_l.shape), list(batch_embedding.shape),
                             list(batch_ab.shape)],
        video_frames=len(frames),
    """,
    "03_encoder": """
        profile=settings.profile,
        image_size=IMAGE_SIZE,
        output_shape=list(ours.shape[1:]),
        encoder_parameters=step_by_step.count_params(),
        library_parameters=library_encoder.count_params(),
        max_difference_to_library=max_difference,
        active_fraction_conv8=float((maps[2] > 0).mean()),
    """,
    "04_inception_fusion": """
        profile=settings.profile,
        extractor=extractor.name,
        weights=extractor.weights_name,
        embedding_dim=int(D),
        colour_top1={name: top[0][0] for name, top in colour_top.items()},
        gray_top1={name: top[0][0] for name, top in gray_top.items()},
        logits_range=[float(embedding.min()), float(embedding.max())],
        volume_shape=list(volume.shape[1:]),
        fused_shape=list(fused.shape[1:]),
        fusion_parameters=fusion.count_params(),
        fusion_broadcast_max_difference=fusion_difference,
        fusion_by_hand_max_difference=by_hand_difference,
        macs_tiled=tiled_macs,
        macs_broadcast=broadcast_macs,
        cache_portraits=len(portraits),
        cache_compute_seconds=compute_seconds,
        cache_load_seconds=load_seconds,
        cache_hits=cache.hits,
        cache_misses=cache.misses,
    """,
    "05_decoder_and_model": """
        profile=settings.profile,
        decoder_parameters=library_decoder.count_params(),
        decoder_max_difference_to_library=decoder_difference,
        total_parameters=colorizer.count_params(),
        parts=parts,
        report_loss=ours,
        keras_mse=keras_mse,
        overfit_size=OVERFIT_SIZE,
        overfit_steps=OVERFIT_STEPS,
        overfit_first_loss=losses[0],
        overfit_best_loss=losses.min(),
        overfit_last_loss=losses[-1],
        overfit_plateau_step=plateau,
        overfit_delta_e=overfit_delta_e,
        gray_delta_e=gray_delta_e,
        comparison_best_loss={name: curve.min() for name, curve in comparison.items()},
        comparison_last_loss={name: curve[-1] for name, curve in comparison.items()},
        extractor=extractor.name,
    """,
    "06_training_on_gpu": """
        profile=settings.profile,
        backend=keras.backend.backend(),
        images=len(data.prepared),
        image_size=config.image_size,
        splits={name: len(indices) for name, indices in data.splits.items()},
        extractor=data.extractor["name"],
        epochs=result.epochs_done,
        batch_size=config.batch_size,
        precision=result.precision,
        images_per_second=result.images_per_second,
        val_loss_before=first_val,
        val_loss_after=last_val,
        train_loss_last=result.history[-1]["loss"],
        held_out_trained=trained,
        held_out_gray=gray,
        snapshots=len(result.snapshots),
        checkpoint_exists=(run_dir / f"checkpoint-epoch{result.epochs_done:03d}.keras").is_file(),
        model_file=model_file.name,
        model_metadata=model_file.with_suffix(".json").is_file(),
        by_hand_val_loss=by_hand_loss,
        library_val_loss=library_loss,
        rerun_trained_nothing=again.resumed_from == again.epochs_done == result.epochs_done,
    """,
    "07_reproduce_table1": """
        profile=settings.profile,
        backend=keras.backend.backend(),
        image_size=IMAGE_SIZE,
        batch_scale=BATCH_SCALE,
        held_out_images=len(table1.indices),
        table1=table1.rows,
        table_markdown=markdown_path.name,
        epochs_curve={"epochs": curve.epochs_done,
"val_loss": curve.curve("val_loss").tolist(),
"val_psnr": curve.curve("val_psnr").tolist(),
"val_chroma": curve.curve("val_chroma").tolist()},
        sources=source_rows,
        overfit_before=overfit.history[0]["val_loss"],
        overfit_after=overfit.history[-1]["val_loss"],
    """,
    "08_evaluate_and_colorize": """
        profile=settings.profile,
        backend=keras.backend.backend(),
        model=model_file.name,
        test_images=len(test),
        evaluation=comparison.rows,
        protocol=metrics.PROTOCOL,
        black_and_white_written=len(report.written),
        black_and_white_skipped=len(report.skipped),
        black_and_white_sizes_kept=all(
Image.open(source).size == Image.open(target).size for source, target in report.written),
        your_photo_shape_in=list(photo.shape),
        your_photo_shape_out=list(your_result.shape),
    """,
}


def check_01_lab_color_space(results: dict, real_data: bool) -> None:
    assert results["profile"] == "ci"
    np.testing.assert_allclose(results["red_lab"], [53.24, 80.09, 67.20], atol=0.01)
    assert results["gray_max_l_change"] < 0.01
    assert results["gray_max_chroma"] < 0.05
    assert results["float_round_trip_max_rgb_diff"] == 0
    assert 0 < results["packed_lab_mean_delta_e"] < 0.5
    candidates = results["candidates"]
    assert candidates["true a,b"]["mean dE00 to truth"] < 0.01
    for name in ("gray (a = b = 0)", "global mean a,b", "brownish constant"):
        assert candidates[name]["mean dE00 to truth"] > 3, name
    assert candidates["gray (a = b = 0)"]["mean chroma"] < 0.05
    if real_data:
        assert results["portrait"] == "us_congress/J000032.jpg"
        assert results["n_mean_portraits"] == 48
        # Averaging cancels colour: the mean of the pixels is far grayer than the pixels are.
        assert np.hypot(*results["global_mean_ab"]) < results["mean_pixel_chroma"] / 2
        # Faces are warm: positive a and b.
        assert min(results["face_mean_ab"]) > 3
        # Knowing where things usually are beats any constant.
        per_pixel = candidates["per-pixel mean a,b"]["mean dE00 to truth"]
        assert per_pixel < min(
            candidates[name]["mean dE00 to truth"]
            for name in ("gray (a = b = 0)", "global mean a,b", "brownish constant")
        )


def check_02_portrait_dataset(results: dict, real_data: bool) -> None:
    assert results["persons_in_two_splits"] == 0
    assert sum(results["split_sizes"].values()) == results["cleaning"]["kept"]
    assert results["messy_reasons"] == {
        "black_and_white.png": "grayscale", "notes.txt": "not an image",
        "photo_copy.jpg": "duplicate", "sepia_print.png": "toned black and white",
        "thumbnail.png": "too small",
        "truncated.jpg": "unreadable"}
    assert results["messy_kept"] == ["photo.jpg", "print_cmyk.jpg", "with_alpha.png"]
    assert results["prepared_images"] == results["cleaning"]["kept"]
    assert results["feeder_batch_shapes"][0][1:] == [results["prepared_size"]] * 2 + [1]
    assert results["video_frames"] == 4
    assert results["cache_reopen_seconds"] < 1.0
    if real_data:
        assert results["image_files"] == 2228 and results["cleaned_files"] == 300
        # The real black-and-white portraits in the sample are recognised as such.
        assert results["cleaning"]["grayscale"] >= 1
        assert results["cleaning"]["kept"] + results["cleaning"]["grayscale"] == 300
        assert 0.1 < results["warm_fraction"] < 0.5


def check_03_encoder(results: dict, real_data: bool) -> None:
    assert results["output_shape"] == [28, 28, 256]
    assert results["encoder_parameters"] == results["library_parameters"] == 5_827_200
    assert results["max_difference_to_library"] == 0.0
    assert 0 < results["active_fraction_conv8"] < 1


def check_04_inception_fusion(results: dict, real_data: bool) -> None:
    assert results["embedding_dim"] == 1000
    assert results["volume_shape"] == [28, 28, 1256]
    assert results["fused_shape"] == [28, 28, 256]
    assert results["fusion_parameters"] == 321_792
    assert results["fusion_broadcast_max_difference"] < 1e-3
    assert results["fusion_by_hand_max_difference"] < 1e-3
    assert results["macs_tiled"] > 4 * results["macs_broadcast"]
    low, high = results["logits_range"]
    assert low < 0 < 1 < high  # logits, not probabilities
    assert (results["cache_misses"], results["cache_hits"]) == (1, 1)
    assert results["cache_load_seconds"] < results["cache_compute_seconds"]
    if results["weights"] in ("torchvision", "imagenet"):  # real ImageNet weights
        assert results["colour_top1"]["coffee"] == "espresso"
        assert results["colour_top1"]["chelsea"] in {
            "tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def check_05_decoder_and_model(results: dict, real_data: bool) -> None:
    assert results["total_parameters"] == 6_573_794
    assert results["parts"] == {"encoder": 5_827_200, "fusion": 321_792, "decoder": 424_802}
    assert results["decoder_max_difference_to_library"] == 0.0
    assert abs(results["report_loss"] - results["keras_mse"]) < 1e-6
    # Over-fitting one photo works: the loss falls tenfold and the colours come back.
    assert results["overfit_best_loss"] < results["overfit_first_loss"] / 10
    assert results["overfit_delta_e"] < results["gray_delta_e"] / 2
    best = results["comparison_best_loss"]
    # With the gradient norm clipped, over-fitting converges with either fusion.
    assert best["clipped Adam, raw logits"] < results["overfit_first_loss"] / 10
    assert best["clipped Adam, standardised"] < results["overfit_first_loss"] / 10


def check_06_training_on_gpu(results: dict, real_data: bool) -> None:
    assert results["epochs"] == 3 and results["snapshots"] == 3
    assert results["checkpoint_exists"] and results["rerun_trained_nothing"]
    assert results["model_file"] == "colorizer_ci.keras" and results["model_metadata"]
    assert results["precision"] == "float32"  # no GPU in CI
    assert results["images_per_second"] > 0
    # The loop written by hand and train.train reach the same loss from the same seed.
    np.testing.assert_allclose(results["by_hand_val_loss"], results["library_val_loss"],
                               rtol=1e-4)
    # Training lowers the held-out loss from the untrained network's.
    assert results["val_loss_after"] < 0.5 * results["val_loss_before"]
    if real_data:
        assert results["images"] == 240 and results["splits"]["val"] > 0
        assert results["held_out_trained"]["loss"] < results["held_out_gray"]["loss"]


def check_07_reproduce_table1(results: dict, real_data: bool) -> None:
    rows = {row["run"]: row for row in results["table1"]}
    assert len(rows) == 6 and results["batch_scale"] == 0.05
    assert [row["updates"] for row in results["table1"][2:]] == [10, 10, 200, 30]
    for row in results["table1"]:
        for key in ("train loss", "held-out loss", "PSNR (dB)", "SSIM", "colourfulness",
                    "colourfulness gap", "mean chroma", "mean hue (deg)", "measured", "report"):
            assert row[key] is not None and row[key] != "", (row["run"], key)
    assert rows["baseline: gray (a = b = 0)"]["measured"].startswith("grayish")
    # The run with the most updates beats the gray baseline on held-out persons.
    assert rows["run 3: 10/100/2"]["held-out loss"] < rows["baseline: gray (a = b = 0)"][
        "held-out loss"]
    curve = results["epochs_curve"]["val_loss"]
    assert min(curve[1:]) < curve[0]
    assert len(results["sources"]) == 4
    assert results["overfit_after"] < results["overfit_before"] / 10


def check_08_evaluate_and_colorize(results: dict, real_data: bool) -> None:
    rows = {row["prediction"]: row for row in results["evaluation"]}
    assert set(rows) == {"gray (a = b = 0)", "training mean a,b", "trained model"}
    assert rows["gray (a = b = 0)"]["measured"].startswith("grayish")
    assert "PSNR" in results["protocol"]
    assert results["your_photo_shape_in"][:2] == results["your_photo_shape_out"][:2]
    assert results["black_and_white_sizes_kept"]
    if real_data:
        assert results["black_and_white_written"] == 6
        assert results["black_and_white_skipped"] == 0
        # Trained on real portraits, the model beats gray output on held-out persons.
        assert rows["trained model"]["held-out loss"] < rows["gray (a = b = 0)"][
            "held-out loss"]


CHECKS = {
    "01_lab_color_space": check_01_lab_color_space,
    "02_portrait_dataset": check_02_portrait_dataset,
    "03_encoder": check_03_encoder,
    "04_inception_fusion": check_04_inception_fusion,
    "05_decoder_and_model": check_05_decoder_and_model,
    "06_training_on_gpu": check_06_training_on_gpu,
    "07_reproduce_table1": check_07_reproduce_table1,
    "08_evaluate_and_colorize": check_08_evaluate_and_colorize,
}


def test_every_notebook_has_checks():
    assert NOTEBOOKS, "no notebooks found"
    missing = [nb.stem for nb in NOTEBOOKS if nb.stem not in CHECKS or nb.stem not in RECORDED]
    assert not missing, f"notebooks without recorded-result checks: {missing}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_executes_in_ci_profile(notebook, monkeypatch):
    data = portraits_dir()
    if data is not None:
        monkeypatch.setenv("KOALA_DATA_DIR", str(data))
    # Executed copies, figures and results all go under build/, never into tracked files.
    monkeypatch.setenv("KOALA_BUILD_DIR", str(BUILD))
    monkeypatch.setenv("KOALA_FIG_DIR", str(BUILD / "figures"))
    monkeypatch.setenv("KOALA_CACHE_DIR", os.environ.get("KOALA_CACHE_DIR", str(BUILD / "cache")))
    results_file = BUILD / "results" / f"{notebook.stem}.json"
    results_file.unlink(missing_ok=True)
    # Training notebooks resume finished runs: start them afresh, so that this run trains.
    for run in (BUILD / "runs").glob(f"{notebook.stem[:2]}_*"):
        shutil.rmtree(run)
    output = BUILD / "notebooks" / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)

    with_record = nbformat.read(notebook, as_version=4)
    with_record.cells.append(nbformat.v4.new_code_cell(
        "from koala_lib.course import record_results\n\n"
        f"record_results({notebook.stem!r}, {RECORDED[notebook.stem].strip()})"))
    source = BUILD / "notebooks" / f"{notebook.stem}.with_record.ipynb"
    source.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(with_record, source)

    pm.execute_notebook(
        str(source),
        str(output),
        parameters={"PROFILE": "ci"},
        cwd=str(notebook.parent),
        kernel_name="python3",
        progress_bar=False,
    )

    assert results_file.exists(), f"{notebook.name} did not record its results"
    CHECKS[notebook.stem](json.loads(results_file.read_text()), real_data=data is not None)
