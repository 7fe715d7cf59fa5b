"""Training frames from your own videos, as the report sampled its 4,000 interview frames.

:func:`sample_frames` decodes a video with PyAV (``pip install koala[video]``; it bundles
FFmpeg) and keeps either one frame every ``every_seconds`` or ``count`` frames at random
times. :func:`extract_frames` writes them as JPEG files into one folder per video, so the
rest of the pipeline treats them like photos, and the split by person keeps all frames of a
video on one side (neighbouring frames are near-duplicates).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _open(path):
    try:
        import av
    except ImportError as error:
        raise ImportError("reading videos needs PyAV: pip install 'av>=14' "
                          "(or pip install koala[video]).") from error
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:
        raise ValueError(f"cannot read {path.name} as a video: {error}") from error


def video_duration(path) -> float:
    """Length in seconds."""
    with _open(path) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1e6


def sample_frames(path, every_seconds: float | None = None, count: int | None = None,
                  seed: int = 0) -> list[tuple[float, np.ndarray]]:
    """``[(time in s, RGB uint8 frame), ...]``: every N seconds, or ``count`` random times.

    The video is decoded once, front to back (no seeking: exact with every codec); for
    each wanted time the first frame at or after it is kept.
    """
    if (every_seconds is None) == (count is None):
        raise ValueError("give exactly one of every_seconds or count.")
    duration = video_duration(path)
    if every_seconds is not None:
        if every_seconds <= 0:
            raise ValueError(f"every_seconds must be positive, got {every_seconds}.")
        wanted = list(np.arange(0.0, duration, every_seconds))
    else:
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}.")
        wanted = sorted(np.random.default_rng(seed).uniform(0, duration, count).tolist())
    frames: list[tuple[float, np.ndarray]] = []
    with _open(path) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if not wanted:
                break
            time = float(frame.pts * stream.time_base) if frame.pts is not None else frame.time
            if time + 1e-6 >= wanted[0]:
                image = frame.to_ndarray(format="rgb24")
                while wanted and time + 1e-6 >= wanted[0]:
                    wanted.pop(0)
                frames.append((time, image))
    return frames


def extract_frames(video, out_dir, every_seconds: float | None = None,
                   count: int | None = None, seed: int = 0, quality: int = 95) -> list[Path]:
    """Write sampled frames to ``out_dir/<video stem>/<stem>_<time>s.jpg``; never overwrite."""
    video = Path(video)
    folder = Path(out_dir) / video.stem
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for time, image in sample_frames(video, every_seconds, count, seed):
        target = folder / f"{video.stem}_{time:09.3f}s.jpg"
        if target.exists():
            raise FileExistsError(f"{target} exists: choose another out_dir.")
        Image.fromarray(image).save(target, quality=quality)
        written.append(target)
    return written
