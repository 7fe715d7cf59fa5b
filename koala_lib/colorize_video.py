"""Colorize a black-and-white video frame by frame, keeping its sound, with less flicker.

**Frame by frame.** Each frame is colorized as :mod:`koala_lib.colorize` colorizes a photo:
its full-resolution L, the a,b predicted at the model's size (frames in batches), upsampled
(``upsample=``, guided by the frame's L by default) and merged with that L, so every frame
keeps its own detail and lightness. Frames keep their timestamps, so the duration (and a
variable frame rate) are kept; the video is written as H.264 (libx264 at CRF 18, which FFmpeg's
H.264 guide calls visually lossless or nearly so) in 4:2:0 (``yuv420p``, the format every player
takes), tagged BT.709, with the source's display matrix (a phone stores a portrait video
sideways and players turn it: the copy is turned the same way). 4:2:0 needs even sides: a
video of odd width or height is written in 4:4:4 (``yuv444p``) at its exact size instead,
which some players (browsers, QuickTime) cannot play; crop it to even sides first if that
matters. The audio streams are copied as they are, packet by packet (never re-encoded: no
loss, no drift); only an audio codec the output container cannot hold (8-bit PCM in MP4, for
one) is re-encoded to AAC, and the report says so. Subtitles and other streams are left out.
The target is written under a temporary name in its folder and renamed at the end: an
interrupted run (Ctrl-C, SIGTERM) leaves no half-written video under the target's name, and
an existing file is never replaced. An input cut short is colorized as far as it goes, and
the report says so.

**Flicker.** The network sees each frame alone, and its classifier embedding is global:
a hand moving in one corner, or the codec's noise, changes the colour predicted for a wall
that did not move, and the colour flickers from frame to frame. :func:`flicker` measures
it as the mean frame-to-frame change of a,b (Euclidean, in Lab units) on *static* pixels,
those whose L changed by less than ``STATIC_THRESHOLD`` (2 L units) since the previous
frame: there the true colour has hardly changed, so a change is flicker. It is measured at
the model's size, where the prediction is made and which is cheap; there the codec's noise
stays under 2 L units on steady footage (the static pixels are most of a still shot).

**Reducing it** (``smoothing=w``): an exponential moving average of the predicted a,b at the
model's size, per pixel and motion-aware, ``ab'_t = w ab'_(t-1) + (1 - w) ab_t`` on static
pixels and ``ab'_t = ab_t`` where L changed (motion, a scene cut: the new prediction is taken
as it is, so colour never trails a moving edge). ``w = 0`` turns it off. On a prediction
that jitters independently from frame to frame around a constant colour it divides the
flicker by ``sqrt(1 + w) / (1 - w)`` (3.2 at 0.6; ``tests/test_colorize_video.py`` checks
it, notebook 10's exercise 2 derives it). The costs: a change of colour on a static pixel is
followed with a lag (90 % of it after ``log 0.1 / log w`` frames: 4.5 at 0.6, 10 at 0.8, 22
at 0.9), and after a cut the pixels whose L happens to equal the last shot's keep its colour
for a while. The default, 0.6, is a cautious choice that trails by under a fifth of a
second at 25 frames a second; raise it for steady footage. What it does on real model
output is measured in notebook 10 (``figures/10_video.md``).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from koala_lib import files
from koala_lib.data.video import ffmpeg_path, open_video, video_duration
from koala_lib.data.video_streams import (
    AudioPassThrough,
    Encoder,
    carry_display_matrix,
    display_matrix,
    ended_early,
    exiting_on_sigterm,
    rotation_of,
)

if TYPE_CHECKING:
    from koala_lib.trained_model import TrainedColorizer

# Keras (through koala_lib.colorize) and PyAV are imported inside the functions that need
# them: the command line reads SMOOTHING for its help without waiting for Keras to start.

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
STATIC_THRESHOLD = 2.0  # L units: a pixel whose L changes less than this is static
SMOOTHING = 0.6  # the EMA's weight of the past on static pixels (see the module docstring)

__all__ = [
    "SMOOTHING",
    "STATIC_THRESHOLD",
    "VIDEO_SUFFIXES",
    "VideoReport",
    "check_smoothing",
    "colorize_video",
    "flicker",
    "free_video_name",
    "is_video_file",
    "smooth_ab",
]


# --- flicker: measured, and reduced --------------------------------------------------------


def _static(lightness: np.ndarray, previous: np.ndarray, static_threshold: float) -> np.ndarray:
    """True where L changed by less than ``static_threshold`` since the previous frame."""
    return np.abs(np.asarray(lightness, np.float32) - previous) < static_threshold


class _FlickerMeter:
    """:func:`flicker`, fed one frame at a time (a video is never held whole)."""

    def __init__(self, static_threshold: float = STATIC_THRESHOLD):
        self.static_threshold = static_threshold
        self.total, self.pixels = 0.0, 0
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, lightness: np.ndarray, ab: np.ndarray) -> None:
        if self._previous is not None and self._previous[0].shape == np.shape(lightness):
            previous_l, previous_ab = self._previous
            static = _static(lightness, previous_l, self.static_threshold)
            change = np.linalg.norm(np.asarray(ab, np.float32)[static] - previous_ab[static],
                                    axis=-1)
            self.total += float(change.sum(dtype=np.float64))
            self.pixels += int(static.sum())
        self._previous = (np.asarray(lightness, np.float32), np.asarray(ab, np.float32))

    @property
    def value(self) -> float:
        return self.total / self.pixels if self.pixels else math.nan


def flicker(lightness, ab, static_threshold: float = STATIC_THRESHOLD) -> float:
    """The mean frame-to-frame change of a,b on static pixels, in Lab units.

    ``lightness`` (T, H, W) in [0, 100] and ``ab`` (T, H, W, 2), the frames in order. A
    pixel is static between frames t-1 and t when its L changed by less than
    ``static_threshold``; the result is ``|ab_t - ab_(t-1)|`` (Euclidean) averaged over
    every static pixel of every pair of consecutive frames. NaN when there is none (fewer
    than two frames, or nothing static): no measurement, rather than a flattering 0.
    """
    lightness, ab = np.asarray(lightness), np.asarray(ab)
    _check_clip(lightness, ab)
    meter = _FlickerMeter(static_threshold)
    for frame_l, frame_ab in zip(lightness, ab, strict=True):
        meter.add(frame_l, frame_ab)
    return meter.value


class _Smoother:
    """:func:`smooth_ab`, fed one frame at a time; carries the previous frame across batches."""

    def __init__(self, smoothing: float = SMOOTHING,
                 static_threshold: float = STATIC_THRESHOLD):
        check_smoothing(smoothing)
        self.smoothing, self.static_threshold = smoothing, static_threshold
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
        lightness, ab = np.asarray(lightness, np.float32), np.asarray(ab, np.float32)
        smoothed = ab
        # A frame of another size (the stream changed resolution) starts afresh, like a cut.
        if self.smoothing and self._previous is not None and (
                self._previous[0].shape == lightness.shape):
            previous_l, previous_ab = self._previous
            static = _static(lightness, previous_l, self.static_threshold)[..., None]
            average = self.smoothing * previous_ab + (1 - self.smoothing) * ab
            smoothed = np.where(static, average, ab)
        self._previous = (lightness, smoothed)
        return smoothed


def smooth_ab(lightness, ab, smoothing: float = SMOOTHING,
              static_threshold: float = STATIC_THRESHOLD) -> np.ndarray:
    """Predicted a,b (T, H, W, 2) of consecutive frames, smoothed in time where L is static.

    ``ab'_t = smoothing * ab'_(t-1) + (1 - smoothing) * ab_t`` on pixels whose L
    (``lightness``, (T, H, W)) changed by less than ``static_threshold`` since frame t-1,
    and ``ab'_t = ab_t`` elsewhere (motion, cuts) and on the first frame. ``smoothing`` is in
    [0, 1); 0 returns the a,b unchanged. float32.
    """
    lightness, ab = np.asarray(lightness), np.asarray(ab)
    _check_clip(lightness, ab)
    smoother = _Smoother(smoothing, static_threshold)
    if not len(ab):
        return ab.astype(np.float32)
    return np.stack([smoother(frame_l, frame_ab)
                     for frame_l, frame_ab in zip(lightness, ab, strict=True)])


def _check_clip(lightness: np.ndarray, ab: np.ndarray) -> None:
    if lightness.ndim != 3 or ab.shape != (*lightness.shape, 2):
        raise ValueError(f"expected L of shape (T, H, W) and a,b of shape (T, H, W, 2), got "
                         f"{lightness.shape} and {ab.shape}.")


def check_smoothing(smoothing: float) -> None:
    """A ValueError unless 0 <= smoothing < 1 (1 would keep the first frame's colour forever)."""
    if not (isinstance(smoothing, numbers.Real) and 0 <= smoothing < 1):  # NaN too
        raise ValueError(f"smoothing must be a number from 0 (off) up to, not including, 1; "
                         f"got {smoothing!r}.")


# --- names ------------------------------------------------------------------------------------


def is_video_file(path) -> bool:
    """Whether ``path`` is named like a video (its suffix, any case: :data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def free_video_name(out_dir, source) -> Path:
    """``out_dir/<source stem>_colorized.mp4``, or ``-1``, ``-2``... while the name is taken."""
    return files.free_name(out_dir, Path(source).stem, ".mp4")


# --- the report ------------------------------------------------------------------------------


@dataclass
class VideoReport:
    source: Path
    target: Path
    frames: int
    width: int
    height: int
    fps: float  # the stream's average frame rate; the timestamps, kept, are what count
    duration: float  # seconds, of the written video stream
    pixel_format: str  # "yuv420p", or "yuv444p" for odd sides
    audio: list[str] = field(default_factory=list)  # per audio stream: what was done
    audio_copied: int = 0  # audio streams copied without re-encoding
    smoothing: float = SMOOTHING
    static_threshold: float = STATIC_THRESHOLD
    flicker_raw: float = math.nan  # mean |delta a,b| on static pixels, the model's a,b
    flicker_smoothed: float = math.nan  # the same after smoothing (equal when smoothing=0)
    rotation: float = 0.0  # degrees counter-clockwise players turn the frames, as the source's
    warnings: list[str] = field(default_factory=list)  # an input cut short, a turn not kept

    def summary(self) -> str:
        audio = "; ".join(self.audio) if self.audio else "no audio"
        turned = f", played turned {self.rotation:g} degrees" if self.rotation else ""
        lines = [f"{self.frames} frames, {self.width}x{self.height}{turned}, "
                 f"{self.fps:.4g} fps, {self.duration:.2f} s, {self.pixel_format}; {audio}",
                 f"flicker (mean |delta a,b| on static pixels, at the model's size): "
                 f"{self.flicker_raw:.2f} -> {self.flicker_smoothed:.2f} with smoothing "
                 f"{self.smoothing:g}"]
        return "\n".join(lines + [f"warning: {warning}" for warning in self.warnings])


# --- reading and writing -------------------------------------------------------------------


def _open_source(path: Path):
    """The input container, or an error naming the file: missing, unreadable, a still image
    under a video's name, or no video stream."""
    container = open_video(path)
    still = container.format.name == "image2" or container.format.name.endswith("_pipe")
    if still or not container.streams.video:
        what = (f"a still image ({container.format.name.removesuffix('_pipe')})" if still
                else "a file without a video stream")
        container.close()
        raise ValueError(f"{path} is {what}, not a video: name a video file "
                         f"({', '.join(VIDEO_SUFFIXES)}).")
    return container


# --- the video --------------------------------------------------------------------------------


@dataclass
class _Frame:
    lightness: np.ndarray  # full resolution, (H, W) in [0, 100]
    small: np.ndarray  # the model's size, (h, w)
    pts: int | None
    duration: int | None


class _Colorizer:
    """Frames in, colorized frames out to the encoder, a batch at a time, in order."""

    def __init__(self, trained, extractor, encoder: Encoder, upsample: str,
                 smoothing: float, batch_size: int):
        self.trained, self.extractor, self.encoder = trained, extractor, encoder
        self.upsample, self.batch_size = upsample, batch_size
        self.smoother = _Smoother(smoothing)
        self.raw, self.smoothed = _FlickerMeter(), _FlickerMeter()
        self.pending: list[_Frame] = []
        self.frames = 0

    def add(self, frame) -> None:
        from koala_lib import colorize

        lightness = colorize.full_lightness(frame.to_ndarray(format="rgb24"))
        if lightness.shape != (self.encoder.stream.height, self.encoder.stream.width):
            raise ValueError(f"the frame size changes at frame {self.frames + 1}, from "
                             f"{self.encoder.stream.width}x{self.encoder.stream.height} to "
                             f"{lightness.shape[1]}x{lightness.shape[0]}: scale the video "
                             "to one size first.")
        shape = colorize.model_size_for(*lightness.shape, self.trained.image_size)
        small = colorize._small_lightness(lightness, shape)
        self.pending.append(_Frame(lightness, small, frame.pts, getattr(frame, "duration", None)))
        self.frames += 1
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        from koala_lib import colorize

        if not self.pending:
            return
        small = np.stack([frame.small for frame in self.pending])
        predicted = colorize.predict_small_ab(self.trained, self.extractor, small)
        for frame, ab in zip(self.pending, predicted, strict=True):
            smoothed = self.smoother(frame.small, ab)
            self.raw.add(frame.small, ab)
            self.smoothed.add(frame.small, smoothed)
            rgb = colorize.merge_full_resolution(frame.lightness, smoothed, self.upsample)
            self.encoder.write(rgb, frame.pts, frame.duration)
        self.pending = []


def _check_paths(source: Path, target: Path) -> None:
    if target.exists():
        raise FileExistsError(files.exists_message(target))
    if not source.is_file():
        raise FileNotFoundError(f"no video file at {source}")
    if target.parent.exists() and not target.parent.is_dir():
        raise ValueError(f"cannot write {target}: {target.parent} is a file, not a folder.")
    if source.resolve() == target.resolve():
        raise ValueError(f"the target {target} is the source itself.")


def colorize_video(trained: TrainedColorizer, extractor, source, target, *,
                   batch_size: int = 16, upsample: str = "guided",
                   smoothing: float = SMOOTHING, progress: bool = True) -> VideoReport:
    """Colorize the video file ``source`` into the new file ``target`` (H.264 with the
    source's audio; an MP4 for a ``.mp4`` name): same size, frame count and timestamps.

    Frames are predicted ``batch_size`` at a time at the model's size, their a,b smoothed
    in time on static pixels (``smoothing``, :func:`smooth_ab`; 0 turns it off), upsampled
    by ``upsample`` (:func:`koala_lib.colorize.upsample_ab`) and merged with each frame's own
    full-resolution L. ``target`` must not exist (FileExistsError); its folder is created.
    The returned report has the flicker (:func:`flicker`) before and after smoothing.
    The source's display matrix (a phone's portrait video is stored sideways, and turned by
    players) is kept, so the colorized copy plays the same way up. A source that ends before
    the end its header declares (a file cut short) is colorized as far as it goes, with a
    warning naming it (``warnings`` of the report, and ``warnings.warn``). SIGTERM, like
    Ctrl-C, leaves no partial file (it raises SystemExit(143) while a video is written).
    Memory: ``batch_size`` frames' full-resolution L (4 bytes a pixel: 530 MB for 16 frames
    of 4K) besides the model, whatever the video's length.
    """
    from tqdm.auto import tqdm

    from koala_lib import colorize

    source, target = Path(source), Path(target)
    check_smoothing(smoothing)  # every check before the first frame is decoded
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    colorize.check_upsample(upsample)
    _check_paths(source, target)
    with exiting_on_sigterm(), _open_source(source) as container:  # its errors first
        video = container.streams.video[0]
        video.thread_type = "AUTO"  # decode on every core: the model waits for frames
        bar = tqdm(total=video.frames or None, unit="frame", desc=source.name,
                   disable=not progress)
        reports = []

        def write(partial: Path) -> None:  # under a temporary name, published when whole
            reports.append(_transcode(container, video, source, partial, trained, extractor,
                                      upsample, smoothing, batch_size, bar))
            reports[0].duration = video_duration(partial)

        files.write_new(target, write)
    report = reports[0]
    report.target = target
    for warning in report.warnings:
        warnings.warn(warning, VideoWarning, stacklevel=2)
    return report


class VideoWarning(UserWarning):
    """Something about a video its report also says (the command line prints the report)."""


def _transcode(container, video, source: Path, partial: Path, trained, extractor,
               upsample: str, smoothing: float, batch_size: int, bar) -> VideoReport:
    """Decode, colorize and encode into ``partial``; the audio is passed on on the way."""
    import av

    context = video.codec_context
    matrix, notes = display_matrix(source), []
    read_until = -math.inf  # seconds: the end of the last packet read, of any stream
    try:
        with av.open(ffmpeg_path(partial), "w") as output:
            encoder = Encoder(output, video, context.width, context.height)
            if matrix is not None:  # before the first packet writes the header
                notes.append(carry_display_matrix(encoder.stream, matrix, source))
            audio = AudioPassThrough(output, container.streams.audio)
            colorizer = _Colorizer(trained, extractor, encoder, upsample, smoothing,
                                   batch_size)
            # Every stream is read, so that how far the file goes is known (see _ended_early).
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    end = (packet.pts + (packet.duration or 0)) * packet.time_base
                    read_until = max(read_until, float(end))
                if packet.stream.index == video.index:
                    for frame in packet.decode():
                        colorizer.add(frame)
                        bar.update()
                elif packet.stream.index in audio.routes:
                    audio.add(packet)
            colorizer.flush()
            if not colorizer.frames:
                raise ValueError(f"{source} holds no video frame that can be decoded.")
            encoder.close()
            audio.close()
    except av.error.FFmpegError as error:  # a damaged stream, a codec the container refuses
        raise ValueError(f"cannot colorize {source}: {error}") from error
    finally:
        bar.close()
    notes.append(ended_early(container, source, read_until, encoder.rate, colorizer.frames))
    return VideoReport(
        source=source, target=partial, frames=colorizer.frames,
        width=context.width, height=context.height, fps=float(encoder.rate), duration=0.0,
        pixel_format=encoder.pix_fmt, audio=audio.notes, audio_copied=audio.copied,
        smoothing=smoothing, static_threshold=STATIC_THRESHOLD,
        flicker_raw=colorizer.raw.value, flicker_smoothed=colorizer.smoothed.value,
        rotation=rotation_of(matrix) if matrix else 0.0,
        warnings=[note for note in notes if note])
