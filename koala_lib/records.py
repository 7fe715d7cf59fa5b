"""What each notebook records when the tests or ``make gpu-check`` run it: the results harness.

The teaching notebooks carry no test harness. :func:`with_record` writes a copy of a notebook
with one cell appended that calls :func:`record_results` on the values named in
:data:`RECORDED`, evaluated in the executed notebook's namespace; they land as JSON under
``<build>/results/<notebook>.json``, where tests and ``benchmarks/gpu_check.py`` read them
(:func:`load_results`) instead of parsing cell outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from koala_lib import environment, files

# What each notebook records: keyword arguments of record_results, evaluated in the executed
# notebook's namespace by the cell with_record appends.
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
        images_per_person=images_per_person,
        size_counts={f"{w}x{h}": n for (w, h), n in sizes.items()},
        enlarged_fraction={size: sum(side < size for side in sides) / len(sides)
                           for size in uses},
        video_clips=len(filmed),
        video_frame_count=len(video_frames),
        video_seconds=video_seconds,
        video_leak_fraction={name: leak.fraction for name, leak in leaks.items()},
        video_leaked_persons={name: leak.leaked_persons for name, leak in leaks.items()},
        memoriser_loss=memoriser_loss,
        gray_loss=gray_loss,
        prepared_images=len(prepared),
        prepared_size=settings.prepared_size,
        cache_megabytes=megabytes,
        cache_reopen_seconds=second_seconds,
        prepared_from_cache=from_cache,
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
        relative_difference_to_library=relative_difference,
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
        decoder_relative_difference_to_library=decoder_difference,
        total_parameters=colorizer.count_params(),
        parts=parts,
        report_loss=ours,
        keras_mse=keras_mse,
        overfit_size=OVERFIT_SIZE,
        overfit_steps=OVERFIT_STEPS,
        overfit_seeds=SEEDS,
        overfit_hand_difference=hand_difference,
        overfit_runs=[{"optimiser": run.optimiser, "standardised": run.standardize_embedding,
                       "seed": run.seed, "first_loss": run.losses[0],
                       "best_loss": run.losses.min(), "final_loss": run.losses[-1],
                       "spiked": run.spiked, "saturated": run.saturated,
                       "stopped_improving": run.stopped_improving} for run in runs],
        overfit_summary=summary,
        overfit_delta_e=overfit_delta_e,
        gray_delta_e=gray_delta_e,
        extractor=extractor.name,
    """,
    "06_training_on_gpu": """
        profile=settings.profile,
        backend=keras.backend.backend(),
        images=len(data.prepared),
        image_size=data.image_size,
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
        snapshot_rows=[ax.get_ylabel() for ax in grid.get_axes()],
        slider_shown=slider is not None,
        tensorboard_logged=board_logs.is_dir(),
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
        report_verdicts=verdicts,
        section43=[claim for claim in claims if claim],
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
    "09_beyond_the_report": """
        profile=settings.profile,
        bins=len(centres),
        expected_weight=float((prior * class_weights).sum()),
        loss_by_hand=float(by_hand.mean()),
        loss_library=float(library),
        val_losses={head: result.curve("val_loss").tolist() for head, result in runs.items()},
        temperatures=list(TEMPERATURES),
        temperature=temperature,
        cross_temperature=cross_temperature,
        cross_sources=others,
        summary=all_rows,
        targets=targets,
        upsampling=upsampling_rows,
        black_and_white_sizes_kept=all(
image.shape == original.shape for label, images in outputs.items() if label != "original"
for image, original in zip(images, outputs["original"], strict=True)),
    """,
    "10_beyond_the_report_part2": """
        profile=settings.profile,
        seeds=list(seeds),
        lr_rows=lr_rows,
        lr_runs=[{"setting": run.setting, "seed": run.seed,
"val_loss": [run.history[0]["val_loss"], *run.curve("val_loss").tolist()],
"train_subset_loss": run.curve("train_subset_loss").tolist()} for run in lr_runs],
        overfitting=overfitting,
        zoom_by_hand_max_diff=float(np.abs(by_hand - library).max()),
        regularisation_rows=regularisation_rows,
        ablation_rows=ablation_rows,
        scene_rows=scene_rows,
        scene_crops=len(scenes.prepared),
        extractor_rows=extractor_rows if settings.compare_extractors else None,
        video_kept=kept,
        video_flicker=[(report.flicker_raw, report.flicker_smoothed) for report in video_reports],
        video_audio_copied=[report.audio_copied for report in video_reports],
        verdicts=verdicts,
        figures=sorted(path.name for path in figures_dir().glob("10_*")),
    """,
}


def record_results(name: str, **values: Any) -> Path:
    """Merge ``values`` into ``<build>/results/<name>.json`` and return its path."""
    path = results_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(files.json_ready(values))
    files.write_replacing(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def load_results(name: str) -> dict[str, Any]:
    path = results_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no recorded results at {path}: run the notebook first.")
    return json.loads(path.read_text())


def results_path(name: str) -> Path:
    return environment.build_dir() / "results" / f"{name}.json"


def with_record(notebook: Path, destination: Path) -> Path:
    """Write ``notebook`` with its recording cell appended to ``destination``. A notebook is
    JSON (nbformat 4): the cell is appended as such, so the library needs no nbformat."""
    copy = json.loads(Path(notebook).read_text(encoding="utf-8"))
    source = (f"from koala_lib.records import record_results\n\n"
              f"record_results({Path(notebook).stem!r}, "
              f"{RECORDED[Path(notebook).stem].strip()})")
    copy["cells"].append({"cell_type": "code", "execution_count": None,
                          "id": "koala-record-results", "metadata": {}, "outputs": [],
                          "source": source})
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(json.dumps(copy, indent=1, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    return destination
