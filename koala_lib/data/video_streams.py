"""The containers of a colorized video: what is read from the source beside its frames, and
how the copy is written.

* The source's display matrix (a phone stores a portrait video sideways and players turn
  it): read from its first frame and given to the copy, which then plays the same way up.
* H.264 out (:class:`Encoder`: libx264 at CRF 18, 4:2:0 when the sides are even, else 4:4:4,
  tagged BT.709), with the source's time stamps.
* The audio passed on packet by packet, or re-encoded to AAC when the output container
  cannot hold its codec (:class:`AudioPassThrough`).
* How far a source went (:func:`ended_early`: a file cut short is said), and SIGTERM turned
  into an exit that cleans up (:func:`exiting_on_sigterm`).
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np

from koala_lib.data.video import open_video

CRF = "18"  # x264's constant rate factor: lower is better and larger; 23 is its default
AUDIO_FALLBACK = "aac"  # for audio codecs the output container cannot hold


def display_matrix(path: Path) -> list[int] | None:
    """The display matrix of ``path``'s video (how players turn and mirror its frames: a
    phone's portrait video is stored sideways), or None. FFmpeg gives it to every decoded
    frame; the first one's is read, as the output's header is written before that frame."""
    import av


    with open_video(path) as container:
        try:
            for frame in container.decode(container.streams.video[0]):
                matrix = frame.side_data.get("DISPLAYMATRIX")
                return None if matrix is None else np.frombuffer(bytes(matrix), "=i4").tolist()
        except av.error.FFmpegError:
            pass  # the colorizing pass says what is wrong with the file
    return None


def rotation_of(matrix: list[int]) -> float:
    """Degrees counter-clockwise that ``matrix`` turns a frame (FFmpeg's
    ``av_display_rotation_get``; what PyAV's ``VideoFrame.rotation`` reads)."""
    scale_x, scale_y = math.hypot(matrix[0], matrix[3]), math.hypot(matrix[1], matrix[4])
    if not scale_x or not scale_y:
        return 0.0
    return round(-math.degrees(math.atan2(matrix[1] / scale_y, matrix[0] / scale_x)), 2)


def carry_display_matrix(stream, matrix: list[int], source: Path) -> str | None:
    """Give the output ``stream`` the source's display matrix, so that players turn the
    colorized frames as they turn the source's; a warning naming ``source`` where this PyAV
    cannot (PyAV 18.1 has ``set_display_matrix``; the ``av>=14`` allowed may not)."""
    if hasattr(stream, "set_display_matrix"):
        stream.set_display_matrix(matrix)
        return None
    import av

    return (f"{source} is played turned {rotation_of(matrix):g} degrees (its display matrix), "
            f"which PyAV {av.__version__} cannot write: its colorized copy plays without the "
            "turn. pip install -U av (18.1 or later) keeps it.")


def frame_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)  # only the encoder's rate control uses it


class Encoder:
    """H.264 video with the input's time base, fed colorized RGB frames with their times."""

    def __init__(self, output, template, width: int, height: int):
        self.output, self.rate = output, frame_rate(template)
        self.time_base = template.time_base or 1 / self.rate
        self.stream = output.add_stream("libx264", rate=self.rate)
        self.stream.width, self.stream.height = width, height
        # 4:2:0 halves the colour planes, so its sides must be even (see the module docstring).
        self.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.stream.pix_fmt = self.pix_fmt
        context = self.stream.codec_context
        context.options = {"crf": CRF}
        context.time_base = self.stream.time_base = self.time_base
        # Tagged BT.709 and limited range, as converted below: untagged, players guess.
        context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709
        context.color_range = 1  # MPEG (limited) range
        self._last_pts: int | None = None

    def write(self, rgb: np.ndarray, pts: int | None, duration: int | None) -> None:
        import av

        step = max(1, round(1 / (self.rate * self.time_base)))
        if pts is None:  # some containers (AVI) leave frames untimed: one frame after the last
            pts = 0 if self._last_pts is None else self._last_pts + step
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # the encoder refuses timestamps that do not increase
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format=self.pix_fmt, dst_colorspace="itu709", dst_color_range="MPEG")
        frame.pts, frame.time_base = pts, self.time_base
        if duration:
            frame.duration = duration  # the last frame's length, and so the duration
        self.output.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.output.mux(self.stream.encode(None))


def _layout_name(stream) -> str:
    return f"{stream.codec_context.layout.nb_channels}c"  # "1c": mono, "2c": stereo, ...


class AudioPassThrough:
    """Every audio stream of the input, copied packet by packet, or re-encoded to AAC when
    the output container cannot hold its codec."""

    def __init__(self, output, streams):
        self.output, self.routes, self.notes, self.copied = output, {}, [], 0
        for stream in streams:
            context = stream.codec_context
            what = (f"{context.name} {context.sample_rate} Hz, "
                    f"{context.layout.nb_channels} channel(s)")
            try:
                self.routes[stream.index] = (output.add_stream_from_template(stream), False)
                self.notes.append(f"audio copied ({what})")
                self.copied += 1
            except ValueError:  # "'mp4' format does not support 'pcm_u8' codec"
                encoder = output.add_stream(AUDIO_FALLBACK, rate=context.sample_rate,
                                            layout=_layout_name(stream))
                self.routes[stream.index] = (encoder, True)
                self.notes.append(f"audio re-encoded to {AUDIO_FALLBACK} ({what}: the "
                                  f"{output.format.name} container cannot hold it as it is)")

    def add(self, packet) -> None:
        target, encode = self.routes[packet.stream.index]
        if encode:  # flush packets included: they empty the decoder
            for frame in packet.decode():
                self.output.mux(target.encode(frame))
        elif packet.dts is not None:  # the demuxer's empty flush packets have none
            packet.stream = target
            self.output.mux(packet)

    def close(self) -> None:
        for target, encode in self.routes.values():
            if encode:
                self.output.mux(target.encode(None))


def ended_early(container, source: Path, read_until: float, rate: Fraction,
                 frames: int) -> str | None:
    """A warning naming ``source`` when its packets stopped (at ``read_until`` seconds)
    before the end its header declares: a file cut short (a copy stopped half-way), whose
    decodable frames were colorized."""
    if not container.duration:  # nothing declared (a live recording's WebM)
        return None
    start, declared = (container.start_time or 0) / 1e6, container.duration / 1e6
    # The slack covers a last frame or packet without a duration and Matroska's milliseconds.
    if read_until >= start + declared - max(0.1, 2 / rate):
        return None
    return (f"{source} ends early: only {max(0.0, read_until - start):.2f} s of the "
            f"{declared:.2f} s its header declares could be read (the file is cut short or "
            f"damaged); the {frames} frames read were colorized.")


@contextmanager
def exiting_on_sigterm() -> Iterator[None]:
    """Within the block SIGTERM raises SystemExit (status 143), as Ctrl-C raises
    KeyboardInterrupt, so that the ``finally`` clauses remove the partial file; by default
    SIGTERM ends the process at once and leaves it. Only in the main thread (Python runs
    handlers there alone) and where no handler of the program's own is installed."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def exit_cleanly(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_cleanly)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
