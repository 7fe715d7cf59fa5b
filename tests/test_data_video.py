"""Frame sampling from a short video that the test writes itself."""

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV is not installed (pip install koala[video])")

from koala_lib.data import video  # noqa: E402

COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 220, 30)]  # one per second


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """4 s at 10 frames/s, 64x48, a different solid colour each second."""
    path = tmp_path_factory.mktemp("video") / "interview.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(40):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[:] = COLOURS[index // 10]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _nearest(rgb):
    mean = rgb.reshape(-1, 3).mean(0)
    return int(np.argmin([np.abs(mean - c).sum() for c in COLOURS]))


def test_every_second_gives_one_frame_per_second(clip):
    assert video.video_duration(clip) == pytest.approx(4.0, abs=0.15)
    frames = video.sample_frames(clip, every_seconds=1.0)
    assert [round(t, 1) for t, _ in frames] == [0.0, 1.0, 2.0, 3.0]
    assert [_nearest(image) for _, image in frames] == [0, 1, 2, 3]
    assert frames[0][1].shape == (48, 64, 3) and frames[0][1].dtype == np.uint8


def test_random_frames_are_seeded_and_sorted(clip):
    first = video.sample_frames(clip, count=5, seed=1)
    again = video.sample_frames(clip, count=5, seed=1)
    times = [t for t, _ in first]
    assert times == [t for t, _ in again] and times == sorted(times)
    assert 1 <= len(first) <= 5 and all(0 <= t < 4 for t in times)


def test_extract_writes_one_folder_per_video_and_never_overwrites(clip, tmp_path):
    written = video.extract_frames(clip, tmp_path, every_seconds=2.0)
    assert [p.parent.name for p in written] == ["interview", "interview"]
    assert [p.name for p in written] == ["interview_00000.000s.jpg", "interview_00002.000s.jpg"]
    with pytest.raises(FileExistsError, match="exists"):
        video.extract_frames(clip, tmp_path, every_seconds=2.0)


def test_bad_arguments_and_files(clip, tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        video.sample_frames(clip)
    with pytest.raises(FileNotFoundError, match="no video file"):
        video.sample_frames(tmp_path / "missing.mp4", every_seconds=1)
    (tmp_path / "fake.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="cannot read fake.mp4"):
        video.sample_frames(tmp_path / "fake.mp4", every_seconds=1)


def test_a_still_filmed_into_a_clip_reads_like_a_video(tmp_path):
    rng = np.random.default_rng(0)
    still = (rng.uniform(0, 1, (40, 30, 3)) * [200, 120, 80]).astype(np.uint8)  # tall
    still = np.kron(still, np.ones((4, 4, 1), np.uint8))  # 160x120, blocky: survives MPEG-4
    clip = video.write_still_clip(still, tmp_path / "person.mp4", seconds=3, fps=10, size=48,
                                  seed=1)
    assert clip == tmp_path / "person.mp4"
    assert video.video_duration(clip) == pytest.approx(3.0, abs=0.15)
    frames = [image for _, image in video.sample_frames(clip, every_seconds=1.0)]
    assert len(frames) == 3 and frames[0].shape == (48, 48, 3)
    first, last = (frame.astype(np.float64) for frame in (frames[0], frames[-1]))
    # The camera moves (the frames differ) but films one image (they stay alike) ...
    assert np.abs(first - last).mean() > 2
    assert np.corrcoef(first.ravel(), last.ravel())[0, 1] > 0.3
    # ... in the still's colours (red above green above blue, on average).
    assert first[..., 0].mean() > first[..., 1].mean() > first[..., 2].mean()
    written = video.extract_frames(clip, tmp_path / "frames", count=4, seed=0)
    assert {path.parent.name for path in written} == {"person"} and 1 <= len(written) <= 4
    with pytest.raises(FileExistsError, match="exists"):
        video.write_still_clip(still, clip)
    with pytest.raises(ValueError, match="even"):
        video.write_still_clip(still, tmp_path / "odd.mp4", size=47)
    with pytest.raises(ValueError, match="zoom"):
        video.write_still_clip(still, tmp_path / "zoom.mp4", zoom=0.5)



def test_a_still_clip_can_carry_a_tone_as_its_sound(tmp_path):
    from conftest import colourful

    clip = video.write_still_clip(colourful(), tmp_path / "tone.mp4", seconds=2, fps=12,
                                  size=32, tone_hz=440)
    with av.open(str(clip)) as container:
        (picture,), (sound,) = container.streams.video, container.streams.audio
        assert sound.codec_context.name == "aac" and sound.rate == video.TONE_RATE
        assert float(sound.duration * sound.time_base) == pytest.approx(2.0, abs=0.1)
        assert float(picture.duration * picture.time_base) == pytest.approx(2.0, abs=0.1)
        samples = np.concatenate([frame.to_ndarray().ravel()
                                  for frame in container.decode(sound)])
    assert 0.05 < np.abs(samples).max() < 0.15  # the tone, at a tenth of full scale


def test_a_relative_name_with_a_colon_is_a_file_not_a_url(tmp_path, monkeypatch):
    from conftest import colourful

    monkeypatch.chdir(tmp_path)  # FFmpeg reads "take:1.mp4" as a URL of protocol "take"
    clip = video.write_still_clip(colourful(), "take:1.mp4", seconds=1, fps=10, size=32)
    assert (tmp_path / "take:1.mp4").is_file() and str(clip) == "take:1.mp4"
    assert video.video_duration(clip) == pytest.approx(1.0, abs=0.15)
    assert len(video.sample_frames(clip, every_seconds=0.5)) == 2
    with video.open_video("take:1.mp4") as container:
        assert container.streams.video[0].codec_context.width == 32
