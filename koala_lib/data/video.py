"""Training frames from your own videos, as the report sampled its 4,000 interview frames.

:func:`sample_frames` decodes a video with PyAV (``pip install koala[video]``; it bundles
FFmpeg) and keeps either one frame every ``every_seconds`` or ``count`` frames at random
times. :func:`extract_frames` writes them as JPEG files into one folder per video, so the
rest of the pipeline treats them like photos, and the split by person keeps all frames of a
video on one side (neighbouring frames are near-duplicates).

:func:`write_still_clip` goes the other way, for demonstrations without footage: it films
one still with a slowly drifting, zooming virtual camera and small changes of brightness,
and writes a real video file, which the functions above read like any other. Its frames are
near-duplicates of each other, as an interview's are; it is not real footage (one pose, one
expression, no speech).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def ffmpeg_path(path) -> str:
    """``path`` as FFmpeg must be given a file: absolute, since it reads a relative name with a
    colon (``take:1.mp4``, ``out:2/a.mp4``) as a URL of an unknown protocol."""
    return str(Path(path).absolute())


def open_video(path):
    """The PyAV container of the video file ``path``, or an error naming it: missing, or
    unreadable as a video."""
    try:
        import av
    except ImportError as error:
        raise ImportError("reading videos needs PyAV: pip install 'av>=14' "
                          "(or pip install koala[video]).") from error
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    try:
        return av.open(ffmpeg_path(path))
    except av.error.FFmpegError as error:
        raise ValueError(f"cannot read {path.name} as a video: {error}") from error


def video_duration(path) -> float:
    """Length in seconds."""
    with open_video(path) as container:
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
    with open_video(path) as container:
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


def write_still_clip(image, path, seconds: float = 4.0, fps: int = 10, size: int = 96,
                     zoom: float = 1.25, brightness: float = 0.08, seed: int = 0,
                     tone_hz: float | None = None) -> Path:
    """Film the RGB still ``image`` into an MPEG-4 video at ``path``: ``size`` x ``size``,
    with a sound track (AAC, mono, 22.05 kHz) of a quiet sine tone when ``tone_hz`` is given.

    The virtual camera frames the image's square crop (the crop policy of
    :func:`koala_lib.data.images.square_crop_resize`), zooms in steadily from the whole
    square to ``1 / zoom`` of its side, drifts from one random point to another (``seed``)
    and changes the brightness by up to ``brightness`` (a fraction, one slow cycle), as light
    and exposure drift in an interview. Returns ``path``; an existing file is an error.
    """
    try:
        import av
    except ImportError as error:
        raise ImportError("writing videos needs PyAV: pip install 'av>=14' "
                          "(or pip install koala[video]).") from error
    from koala_lib.data.images import square_crop_resize

    if size <= 0 or size % 2:
        raise ValueError(f"size must be a positive even number (yuv420p), got {size}.")
    if seconds <= 0 or fps <= 0 or zoom < 1 or not 0 <= brightness < 1:
        raise ValueError(f"need seconds > 0, fps > 0, zoom >= 1 and 0 <= brightness < 1; got "
                         f"{seconds}, {fps}, {zoom}, {brightness}.")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: choose another path.")
    side = 2 * size  # film a sharper copy: the camera's crop is resized down to size
    still = Image.fromarray(square_crop_resize(image, side))
    rng = np.random.default_rng(seed)
    start, end = rng.uniform(-1, 1, (2, 2))  # where the camera looks, in units of its slack
    phase = rng.uniform(0, 2 * np.pi)
    count = max(1, round(seconds * fps))
    with av.open(ffmpeg_path(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        stream.bit_rate = 8 * size * size * fps  # 8 bits a pixel: few compression blocks
        # Every stream is declared before the first packet is written (the file's header).
        sound = container.add_stream("aac", rate=TONE_RATE, layout="mono") if tone_hz else None
        for index in range(count):
            t = index / max(1, count - 1)
            window = side / (1 + (zoom - 1) * t)
            slack = (side - window) / 2
            centre_x, centre_y = side / 2 + slack * ((1 - t) * start + t * end)
            box = (centre_x - window / 2, centre_y - window / 2,
                   centre_x + window / 2, centre_y + window / 2)
            frame = np.asarray(still.resize((size, size), Image.Resampling.BILINEAR, box=box),
                               np.float32)
            frame *= 1 + brightness * np.sin(2 * np.pi * t + phase)
            frame = np.clip(frame, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _write_tone(container, sound, tone_hz, count / fps)
    return path


TONE_RATE = 22050  # samples a second of write_still_clip's tone


def _write_tone(container, stream, frequency: float, seconds: float) -> None:
    """A sine tone of ``seconds`` at a tenth of full scale into the audio ``stream``."""
    import av

    rate = TONE_RATE
    samples = np.sin(2 * np.pi * frequency * np.arange(round(seconds * rate)) / rate)
    samples = (0.1 * samples).astype(np.float32)[None]
    chunk = 1024  # AAC's frame size
    for start in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + chunk]),
                                           format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


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
