"""Colorizing videos: frames, size, timing and sound kept; flicker measured and reduced."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from koala_lib import color, colorize, trained_model
from koala_lib.__main__ import main
from koala_lib.colorize_video import (
    SMOOTHING,
    STATIC_THRESHOLD,
    colorize_video,
    flicker,
    free_video_name,
    is_video_file,
    smooth_ab,
)

av = pytest.importorskip("av", reason="PyAV is not installed (pip install koala[video])")

FPS, FRAMES, WIDTH, HEIGHT = 12, 24, 96, 64
SAMPLE_RATE = 22050


def gray_frames(frames=FRAMES, width=WIDTH, height=HEIGHT) -> np.ndarray:
    """(T, H, W, 3) uint8 gray frames: a shaded backdrop and a bright square moving right."""
    backdrop = np.linspace(40, 200, width)[None, :] + np.linspace(-20, 20, height)[:, None]
    clip = np.repeat(backdrop[None], frames, axis=0)
    for t in range(frames):
        clip[t, height // 4 : height // 4 + 16, 8 + 2 * t : 24 + 2 * t] = 235
    return np.repeat(clip[..., None], 3, axis=-1).astype(np.uint8)


def write_clip(path, *, frames=FRAMES, width=WIDTH, height=HEIGHT, audio: str | None = "aac",
               pix_fmt="yuv420p", rotation: int | None = None, hflip=False, options=None):
    """An H.264 clip of :func:`gray_frames` at ``FPS``, with a mono 440 Hz tone of the same
    length in ``audio`` (an audio codec name) unless None; a player turns it ``rotation``
    degrees counter-clockwise (then mirrors it, ``hflip``). ``options``: the muxer's."""
    with av.open(str(path), "w", options=options or {}) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            video.set_display_rotation(rotation, hflip=hflip)
        sound = None
        if audio:
            sound = container.add_stream(audio, rate=SAMPLE_RATE, layout="mono")
        for image in gray_frames(frames, width, height):
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            _write_tone(container, sound, frames / FPS)
    return path


def _write_tone(container, stream, seconds):
    samples = 0.2 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * SAMPLE_RATE))
                           / SAMPLE_RATE)
    planar = stream.codec_context.format.is_planar
    encoded = samples.astype(np.float32) if planar else (samples * 127 + 128).astype(np.uint8)
    for start in range(0, encoded.size, 1024):
        chunk = np.ascontiguousarray(encoded[None, start : start + 1024])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp" if planar else "u8",
                                           layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        frame.time_base = Fraction(1, SAMPLE_RATE)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def probe(path) -> dict:
    """What a player sees: the video's frames, size, duration, the turn it gives them (its
    display matrix, the rotation counter-clockwise), and the audio."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {"width": video.codec_context.width, "height": video.codec_context.height,
                "pix_fmt": video.codec_context.pix_fmt, "codec": video.codec_context.name,
                "duration": float(video.duration * video.time_base),
                "audio": [(s.codec_context.name, s.codec_context.sample_rate,
                           float(s.duration * s.time_base)) for s in container.streams.audio]}
        decoded = list(container.decode(video))
        info["frames"] = [frame.to_ndarray(format="rgb24") for frame in decoded]
        matrix = decoded[0].side_data.get("DISPLAYMATRIX")
        info["display_matrix"] = None if matrix is None else bytes(matrix)
        info["rotation"] = decoded[0].rotation
    return info


def lightness(frames) -> np.ndarray:
    return np.stack([color.rgb_to_lab(frame)[..., 0] for frame in frames])


@pytest.fixture(scope="module")
def trained(saved_model, extractor):
    return trained_model.load_trained(saved_model, extractor)[0]


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory, trained, extractor):
    """(source, target, report) of the standard clip, colorized once for several tests."""
    folder = tmp_path_factory.mktemp("video")
    source = write_clip(folder / "clip.mp4")
    report = colorize_video(trained, extractor, source, folder / "out" / "clip_colorized.mp4",
                            progress=False)
    return source, folder / "out" / "clip_colorized.mp4", report


# --- the video, end to end ---------------------------------------------------------------


def test_a_video_round_trip_keeps_frame_count_size_duration_and_audio(round_trip):
    source, target, report = round_trip
    before, after = probe(source), probe(target)
    assert len(after["frames"]) == len(before["frames"]) == FRAMES == report.frames
    assert (after["width"], after["height"]) == (WIDTH, HEIGHT) == (report.width, report.height)
    assert after["codec"] == "h264" and after["pix_fmt"] == "yuv420p"
    assert abs(after["duration"] - before["duration"]) < 1 / FPS
    assert report.duration == pytest.approx(after["duration"]) and report.fps == FPS
    [(codec, rate, seconds)] = after["audio"]
    assert (codec, rate) == before["audio"][0][:2] == ("aac", SAMPLE_RATE)
    assert abs(seconds - before["audio"][0][2]) < 1 / FPS
    assert report.audio_copied == 1 and "copied" in report.audio[0]
    assert [path.name for path in target.parent.iterdir()] == [target.name]  # no partial left
    assert report.warnings == [] and "warning" not in report.summary()
    assert after["display_matrix"] is None  # an upright input stays upright
    (target.parent / "plain.txt").write_text("")  # the folder's usual permissions, not 0600
    assert target.stat().st_mode == (target.parent / "plain.txt").stat().st_mode
    (target.parent / "plain.txt").unlink()


def test_the_colorized_frames_keep_the_input_lightness_and_gain_colour(round_trip):
    source, target, _ = round_trip
    frames = probe(target)["frames"]
    # Through H.264 twice (the test clip, then the output): a little, not a lot, of L moves.
    assert np.abs(lightness(frames) - lightness(probe(source)["frames"])).mean() < 3
    lab = color.rgb_to_lab(frames[FRAMES // 2])
    assert np.hypot(lab[..., 1], lab[..., 2]).mean() > 1  # an untrained model, but colour


def test_the_report_measures_flicker_the_same_way_as_on_the_whole_clip(round_trip, trained,
                                                                        extractor):
    source, _, report = round_trip
    # Frames were predicted 16 at a time; smoothing and flicker carried across the batches.
    full_l = np.stack([colorize.full_lightness(frame) for frame in probe(source)["frames"]])
    shape = colorize.model_size_for(HEIGHT, WIDTH, trained.image_size)
    small = np.stack([colorize._small_lightness(frame, shape) for frame in full_l])
    ab = colorize.predict_small_ab(trained, extractor, small)
    assert report.flicker_raw == pytest.approx(flicker(small, ab), rel=1e-3)
    assert report.flicker_smoothed == pytest.approx(flicker(small, smooth_ab(small, ab)),
                                                    rel=1e-3)
    assert report.flicker_smoothed < report.flicker_raw and report.smoothing == SMOOTHING
    assert "flicker" in report.summary() and "copied" in report.summary()


def test_a_clip_without_audio_gives_a_video_without_audio(tmp_path, trained, extractor):
    source = write_clip(tmp_path / "silent.mp4", audio=None)
    report = colorize_video(trained, extractor, source, tmp_path / "out.mp4", progress=False,
                            smoothing=0, batch_size=5)
    after = probe(tmp_path / "out.mp4")
    assert after["audio"] == [] and report.audio == [] and report.audio_copied == 0
    assert len(after["frames"]) == FRAMES
    assert report.flicker_smoothed == report.flicker_raw  # smoothing 0: nothing changed


def test_an_odd_sized_video_keeps_its_size_in_4_4_4(tmp_path, trained, extractor):
    source = write_clip(tmp_path / "odd.mp4", width=95, height=63, audio=None,
                        pix_fmt="yuv444p", frames=6)
    report = colorize_video(trained, extractor, source, tmp_path / "out.mp4", progress=False)
    after = probe(tmp_path / "out.mp4")
    assert (after["width"], after["height"], after["pix_fmt"]) == (95, 63, "yuv444p")
    assert report.pixel_format == "yuv444p" and len(after["frames"]) == 6


def test_audio_the_mp4_cannot_hold_is_re_encoded_to_aac_and_said(tmp_path, trained, extractor):
    source = write_clip(tmp_path / "pcm.mkv", audio="pcm_u8", frames=12)
    report = colorize_video(trained, extractor, source, tmp_path / "out.mp4", progress=False)
    [(codec, rate, seconds)] = probe(tmp_path / "out.mp4")["audio"]
    assert (codec, rate) == ("aac", SAMPLE_RATE) and abs(seconds - 12 / FPS) < 1 / FPS
    assert report.audio_copied == 0 and "re-encoded to aac (pcm_u8" in report.audio[0]
    assert report.warnings == []  # a whole Matroska file does not end early


needs_display_matrices = pytest.mark.skipif(
    not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
    reason="this PyAV cannot write display matrices (PyAV 18.1 can)")


@needs_display_matrices
@pytest.mark.parametrize(("rotation", "hflip"), [(90, False), (-90, True)])
def test_a_video_with_rotation_metadata_plays_the_same_way_up(tmp_path, trained, extractor,
                                                              rotation, hflip):
    source = write_clip(tmp_path / "phone.mp4", frames=4, audio=None, rotation=rotation,
                        hflip=hflip)
    report = colorize_video(trained, extractor, source, tmp_path / "out.mp4", progress=False)
    before, after = probe(source), probe(tmp_path / "out.mp4")
    assert before["rotation"] == rotation and before["display_matrix"] is not None
    # The same pictures, stored the same way, turned (and mirrored) the same way on playing.
    assert after["display_matrix"] == before["display_matrix"]
    assert after["rotation"] == rotation and report.rotation == rotation
    assert (after["width"], after["height"]) == (WIDTH, HEIGHT) == (report.width, report.height)
    assert np.abs(lightness(after["frames"]) - lightness(before["frames"])).mean() < 3
    assert f"turned {rotation} degrees" in report.summary()


def test_a_pyav_that_cannot_write_the_rotation_says_so_naming_the_file(tmp_path):
    from koala_lib.data.video_streams import carry_display_matrix

    class OldStream:  # a PyAV before 18.1: no set_display_matrix
        pass

    matrix = [0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30]
    warning = carry_display_matrix(OldStream(), matrix, tmp_path / "phone.mp4")
    assert re.search(r"phone\.mp4 is played turned 90 degrees.*plays without the turn", warning)


@pytest.mark.parametrize(("name", "kept", "options", "audio"), [
    ("cut.mkv", 0.6, None, "aac"),  # its header declares its duration
    ("cut.mp4", 0.9, {"movflags": "faststart"}, None),  # its header lists every frame first
])
def test_a_truncated_video_is_colorized_as_far_as_it_goes_and_says_it_ended_early(
        tmp_path, trained, extractor, name, kept, options, audio):
    whole = write_clip(tmp_path / f"whole{Path(name).suffix}", options=options, audio=audio)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole file: no warning
        report = colorize_video(trained, extractor, whole, tmp_path / "whole_out.mp4",
                                progress=False)
    assert report.frames == FRAMES and report.warnings == []
    data = whole.read_bytes()
    source = tmp_path / name
    source.write_bytes(data[: int(len(data) * kept)])
    with pytest.warns(UserWarning, match=rf"{name} ends early") as caught:
        report = colorize_video(trained, extractor, source, tmp_path / "out.mp4",
                                progress=False)
    written = len(probe(tmp_path / "out.mp4")["frames"])
    assert 0 < written == report.frames < FRAMES
    summary = report.summary()
    assert f"warning: {source} ends early" in summary
    assert f"the {written} frames read were colorized" in summary
    assert all(str(source) in str(warning.message) for warning in caught)


# --- never losing a file, and clear errors -------------------------------------------------


def test_an_existing_target_is_never_overwritten(tmp_path, trained, extractor):
    source = write_clip(tmp_path / "clip.mp4", frames=4)
    target = tmp_path / "taken.mp4"
    target.write_bytes(b"my own film")
    with pytest.raises(FileExistsError, match="taken.mp4 exists and is never overwritten"):
        colorize_video(trained, extractor, source, target, progress=False)
    assert target.read_bytes() == b"my own film"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4", "taken.mp4"]


def test_an_interrupted_run_leaves_nothing_under_the_target_name(tmp_path, trained, extractor,
                                                                monkeypatch):
    source = write_clip(tmp_path / "clip.mp4", audio=None)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return merge(*args, **kwargs)

    merge = colorize.merge_full_resolution
    monkeypatch.setattr(colorize, "merge_full_resolution", interrupted)
    sigterm = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        colorize_video(trained, extractor, source, tmp_path / "out" / "clip.mp4",
                       progress=False)
    assert list((tmp_path / "out").iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is sigterm  # SIGTERM's handler given back


def test_a_terminated_run_leaves_no_partial_file(tmp_path, saved_model):
    source = write_clip(tmp_path / "long.mp4", frames=600, audio=None)  # 50 s: minutes of work
    out = tmp_path / "out"
    command = [sys.executable, "-m", "koala_lib", "colorize", str(source), "--out", str(out),
               "--model", str(saved_model), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (out.is_dir() and list(out.glob(".*.partial.mp4"))):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no partial file appeared:\n{process.communicate()[1][-3000:]}")
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 128 + signal.SIGTERM  # SystemExit(143), cleaned up
    assert list(out.iterdir()) == []


def test_names_with_a_colon_are_files_not_urls(tmp_path, trained, extractor, monkeypatch):
    write_clip(tmp_path / "take:1.mp4", frames=4, audio=None)
    monkeypatch.chdir(tmp_path)  # relative names, which FFmpeg reads as "take:" URLs
    target = Path("out:2") / "take:1_colorized.mp4"
    report = colorize_video(trained, extractor, Path("take:1.mp4"), target, progress=False)
    assert report.target == target and len(probe(tmp_path / target)["frames"]) == 4
    assert os.listdir(tmp_path / "out:2") == ["take:1_colorized.mp4"]


@pytest.mark.parametrize("kind", ["text", "png", "empty", "audio only", "missing"])
def test_a_file_that_is_not_a_video_is_a_clear_error_naming_it(tmp_path, trained, extractor,
                                                                kind):
    source = tmp_path / "film.mp4"
    if kind == "text":
        source.write_text("not a film")
    elif kind == "png":
        Image.fromarray(gray_frames(1)[0]).save(source, format="PNG")
    elif kind == "empty":
        source.write_bytes(b"")
    elif kind == "audio only":
        with av.open(str(source), "w") as container:
            _write_tone(container, container.add_stream("aac", rate=SAMPLE_RATE,
                                                        layout="mono"), 0.5)
    error = FileNotFoundError if kind == "missing" else ValueError
    with pytest.raises(error, match="film.mp4") as raised:
        colorize_video(trained, extractor, source, tmp_path / "out" / "film.mp4",
                       progress=False)
    message = {"png": "is a still image", "audio only": "without a video stream",
               "missing": "no video file"}.get(kind, "cannot read")
    assert message in str(raised.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_arguments_out_of_range_are_refused_before_any_work(tmp_path, trained, extractor):
    for smoothing in (1, -0.1, math.nan):
        with pytest.raises(ValueError, match="smoothing must be a number from 0"):
            colorize_video(trained, extractor, tmp_path / "none.mp4", tmp_path / "o.mp4",
                           smoothing=smoothing)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        colorize_video(trained, extractor, tmp_path / "none.mp4", tmp_path / "o.mp4",
                       batch_size=0)


def test_names_of_videos_and_of_their_outputs(tmp_path):
    assert is_video_file("a.MP4") and is_video_file("b.webm") and not is_video_file("c.png")
    assert free_video_name(tmp_path, "dir/film.MOV") == tmp_path / "film_colorized.mp4"
    (tmp_path / "film_colorized.mp4").touch()
    (tmp_path / "film_colorized-1.mp4").touch()
    assert free_video_name(tmp_path, "film.avi") == tmp_path / "film_colorized-2.mp4"


# --- flicker: measured, and reduced --------------------------------------------------------


def jittering_static_scene(frames=24, side=16, jitter=3.0, seed=0):
    """(L, a,b): a scene that does not move (L within codec-like noise of half a unit), whose
    predicted a,b jitter around one colour by a Gaussian of ``jitter`` Lab units."""
    rng = np.random.default_rng(seed)
    light = 50 + rng.uniform(-0.5, 0.5, (frames, side, side)).astype(np.float32)
    ab = np.float32([20, -10]) + rng.normal(0, jitter, (frames, side, side, 2))
    return light, ab.astype(np.float32)


def test_smoothing_lowers_the_flicker_of_a_jittering_prediction_on_a_static_scene():
    light, ab = jittering_static_scene()
    raw = flicker(light, ab)
    # Two independent jitters of 3 apart: a Rayleigh-distributed distance of mean 3 sqrt(pi).
    assert raw == pytest.approx(3 * math.sqrt(math.pi), rel=0.05)  # measured 5.31
    for weight, measured in ((0.6, 1.71), (0.8, 0.83)):
        smoothed = flicker(light, smooth_ab(light, ab, weight))
        assert smoothed == pytest.approx(measured, abs=0.01)  # the module docstring's numbers
        # The steady state of the EMA of independent jitter: (1 - w) / sqrt(1 + w) of it.
        assert smoothed / raw == pytest.approx((1 - weight) / math.sqrt(1 + weight), rel=0.1)
    np.testing.assert_array_equal(smooth_ab(light, ab, 0), ab)


def test_where_the_scene_changes_the_smoothed_colour_is_the_new_prediction():
    light, ab = jittering_static_scene()
    light[12:, :, :8] += 30  # a cut at frame 12 on the left half; the right half stays
    smoothed = smooth_ab(light, ab, 0.6)
    np.testing.assert_array_equal(smoothed[12, :, :8], ab[12, :, :8])
    np.testing.assert_allclose(smoothed[12, :, 8:], 0.6 * smoothed[11, :, 8:]
                               + 0.4 * ab[12, :, 8:], rtol=1e-6)
    np.testing.assert_array_equal(smoothed[0], ab[0])  # nothing before the first frame
    assert not np.array_equal(smoothed[13, :, :8], ab[13, :, :8])  # static again after it


def test_flicker_counts_only_static_pixels():
    light = np.full((2, 2, 2), 50, np.float32)
    light[1, 0, 0] += STATIC_THRESHOLD  # changed by the threshold: not static
    ab = np.zeros((2, 2, 2, 2), np.float32)
    ab[1] = [3, 4]  # a change of 5 on every pixel...
    ab[1, 0, 0] = [60, 80]  # ...and 100 where L changed, which is motion, not flicker
    assert flicker(light, ab) == pytest.approx(5.0)
    assert math.isnan(flicker(light[:1], ab[:1]))  # one frame: nothing to measure
    with pytest.raises(ValueError, match=r"\(T, H, W, 2\)"):
        flicker(light, ab[..., 0])


# --- the command line ------------------------------------------------------------------------


def test_the_command_line_colorizes_a_video_beside_a_photo(tmp_path, saved_model, capsys):
    source = write_clip(tmp_path / "Film.MP4", frames=8)
    broken = tmp_path / "broken.mov"
    broken.write_text("not a film")
    photo = tmp_path / "photo.png"
    Image.fromarray(gray_frames(1)[0]).save(photo)
    out = tmp_path / "out"
    arguments = ["colorize", str(source), str(broken), str(photo), "--out", str(out),
                 "--model", str(saved_model), "--quiet", "--smoothing", "0.5"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'Film_colorized.mp4'}  (from {source})" in printed
    assert "flicker (mean |delta a,b| on static pixels" in printed and "smoothing 0.5" in printed
    assert "colorized 1 video(s), skipped 1" in printed and "broken.mov: cannot read" in printed
    assert "colorized 1 image(s)" in printed
    assert len(probe(out / "Film_colorized.mp4")["frames"]) == 8
    assert main(arguments[:2] + arguments[4:]) == 0  # again: a new name, the first kept
    assert sorted(path.name for path in out.iterdir()) == [
        "Film_colorized-1.mp4", "Film_colorized.mp4", "photo_colorized.png"]


def test_the_command_line_refuses_a_smoothing_out_of_range_before_loading_the_model(
        tmp_path, saved_model, capsys, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(trained_model, "load_trained", no_loading)
    source = tmp_path / "film.mp4"
    source.write_bytes(b"never read")
    for value in ("1", "-0.5", "nan"):
        assert main(["colorize", str(source), "--out", str(tmp_path / "out"), "--model",
                     str(saved_model), "--smoothing", value]) == 1
        assert "--smoothing must be from 0 (off)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_command_line_help_documents_videos(capsys):
    with pytest.raises(SystemExit):
        main(["colorize", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    assert "--smoothing W" in text and "<name>_colorized.mp4" in text and ".webm" in text
    assert f"(default {SMOOTHING:g})" in text and "never modified" in text
