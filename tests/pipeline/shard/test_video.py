"""Video members: uniform sampling in time (or by shots), seeking instead of decoding everything, and every kind
of damage refused with its drop reason, on clips PyAV encodes here."""

import random

import pytest
from PIL import Image

from capfilt.pipeline.config import VideoConfig
from capfilt.pipeline.shard.annotate import caption_frames
from capfilt.pipeline.shard.video import (
    VideoRefused,
    frames_to_sample,
    read_clip,
    shot_frames,
    shot_starts,
    uniform_indices,
)
from tests.helpers import (
    audio_only_mp4,
    clip_bytes,
    frame_index,
    grey_frames,
    no_decodable_frame,
    rotated_mp4,
    webm_bytes,
)


def constant_rate(frames: int, fps: float = 1.0) -> tuple[list[float], float]:
    return [i / fps for i in range(frames)], frames / fps


def test_uniform_indices_are_the_middles_of_equal_segments():
    # floor((i + 0.5) * n / count): 30 frames, 8 samples -> 1.875, 5.625, 9.375, 13.125, 16.875, ...
    assert uniform_indices(*constant_rate(30), 8) == [1, 5, 9, 13, 16, 20, 24, 28]
    assert uniform_indices(*constant_rate(100, fps=25), 4) == [12, 37, 62, 87]
    assert uniform_indices(*constant_rate(1), 8) == [0]
    # Fewer frames than samples: each frame once, none invented.
    assert uniform_indices(*constant_rate(5), 8) == [0, 1, 2, 3, 4]
    # Variable frame rate: in time, not by index. Middles at 0.25, 0.75, 1.25, 1.75 s show frames 2, 2, 4, 4.
    assert uniform_indices([0, 0.1, 0.15, 0.9, 1.0, 1.9], 2.0, 4) == [2, 4]


def test_fps_sampling_is_capped_at_frames():
    assert frames_to_sample(3.0, VideoConfig(frames=8)) == 8
    assert frames_to_sample(3.0, VideoConfig(frames=8, fps=1.0)) == 3
    assert frames_to_sample(60.0, VideoConfig(frames=8, fps=1.0)) == 8
    assert frames_to_sample(0.2, VideoConfig(frames=8, fps=1.0)) == 1


@pytest.mark.parametrize(
    "encode",
    [
        lambda f: clip_bytes(f),  # h264 in mp4, B-frames: decode order is not presentation order
        lambda f: webm_bytes(f),
        lambda f: clip_bytes(f, "matroska", "libx264"),
        lambda f: clip_bytes(f, "avi", "mpeg4"),
        lambda f: clip_bytes(f, "mov", "mpeg4"),
    ],
    ids=["mp4-h264", "webm-vp9", "mkv-h264", "avi-mpeg4", "mov-mpeg4"],
)
def test_the_sampled_frames_are_the_ones_the_indices_name(encode):
    clip = read_clip(encode(grey_frames(30)), VideoConfig(frame_choice="uniform"))
    assert [frame_index(f) for f in clip.frames] == [1, 5, 9, 13, 16, 20, 24, 28]
    assert read_clip(encode(grey_frames(30)), VideoConfig()).times == clip.times  # one shot: the same frames
    assert clip.times == pytest.approx([i / 12 for i in (1, 5, 9, 13, 16, 20, 24, 28)], abs=1e-3)
    assert clip.duration == pytest.approx(2.5, abs=1e-3)
    assert all(f.mode == "RGB" and f.size == (64, 48) for f in clip.frames)


def test_seeking_decodes_a_keyframe_interval_per_sample_at_most_not_the_whole_clip():
    frames = grey_frames(32) * 8  # 256 frames, a keyframe every 16
    data = clip_bytes(frames, options={"g": "16", "bf": "0"})
    clip = read_clip(data, VideoConfig(frames=4, frame_choice="uniform"))
    assert [frame_index(f) for f in clip.frames] == [0, 0, 0, 0]  # frames 32, 96, 160, 224: grey level wraps
    assert clip.times == pytest.approx([32 / 12, 96 / 12, 160 / 12, 224 / 12], abs=1e-3)
    # Each sample is reached from the keyframe before it: 1 frame each here (32, 96, ... are keyframes).
    assert clip.decoded <= 4 * 16 < 256


def test_variable_frame_rate_is_sampled_in_time():
    times = [0, 0.1, 0.15, 0.9, 1.0, 1.9]
    clip = read_clip(clip_bytes(grey_frames(6), times=times), VideoConfig(frames=4))
    assert [frame_index(f) for f in clip.frames] == [2, 4]
    assert clip.times == pytest.approx([0.15, 1.0], abs=1e-3)


def test_a_rotated_stream_comes_out_the_way_a_player_shows_it():
    image = grey_frames(1, size=(64, 32))[0]
    image.paste((255, 255, 255), (0, 0, 16, 16))  # a white mark at the top left of the stored pixels
    clip = read_clip(rotated_mp4(clip_bytes([image] * 3)), VideoConfig(frames=1))
    frame = clip.frames[0]
    assert frame.size == (32, 64)  # turned a quarter clockwise: the top left is now the top right
    assert frame.getpixel((28, 4))[0] > 200 and frame.getpixel((4, 4))[0] < 60


def refused(data: bytes, config: VideoConfig | None = None) -> tuple[str, str]:
    with pytest.raises(VideoRefused) as caught:
        read_clip(data, config or VideoConfig())
    return caught.value.reason, caught.value.detail


def test_damage_and_limits_are_refused_with_their_reason(tmp_path):
    good = clip_bytes(grey_frames(30))
    faststart = clip_bytes(grey_frames(30), path=tmp_path / "fast.mp4")  # index first: a cut leaves it readable
    webm = webm_bytes(grey_frames(30))
    assert refused(b"")[0] == "undecodable_video"
    assert refused(random.Random(0).randbytes(5000))[0] == "undecodable_video"
    assert refused(audio_only_mp4()) == ("no_video_stream", "no video stream (audio only)")
    assert refused(no_decodable_frame(good)) == ("undecodable_video", "no decodable frame")
    middle_of_frames = (faststart.index(b"mdat") + len(faststart)) // 2
    assert refused(faststart[:middle_of_frames])[0] == "video_cut_short"
    assert refused(faststart[: len(faststart) - 100])[0] == "video_cut_short"  # only the last frame is missing
    assert refused(webm[: len(webm) // 2])[0] == "video_cut_short"
    assert refused(good[: len(good) // 2])[0] == "undecodable_video"  # the index was at the end: nothing to read
    reason, detail = refused(good, VideoConfig(max_pixels=64 * 48 - 1))
    assert reason == "video_too_large" and "(header)" in detail
    reason, detail = refused(good, VideoConfig(max_seconds=2.0))
    assert reason == "video_too_long" and "2.5 s" in detail
    assert refused(good, VideoConfig(decode_seconds=1e-6))[0] == "video_decode_timeout"


def test_a_playlist_named_mp4_never_opens_the_files_it_names(tmp_path, monkeypatch):
    # FFmpeg's concat demuxer would read clip.mp4 from the working folder and decode it; only video containers'
    # demuxers are allowed, so the text is refused instead.
    (tmp_path / "clip.mp4").write_bytes(clip_bytes(grey_frames(30)))
    monkeypatch.chdir(tmp_path)
    assert refused(b"ffconcat version 1.0\nfile clip.mp4\n")[0] == "undecodable_video"


def test_decoding_the_same_bytes_twice_gives_the_same_pixels():
    data = webm_bytes(grey_frames(30))
    first, second = read_clip(data, VideoConfig()), read_clip(data, VideoConfig())
    assert [f.tobytes() for f in first.frames] == [f.tobytes() for f in second.frames]


def test_caption_frames_pick_the_middle_every_frame_or_one_per_caption():
    assert caption_frames(8, "middle", 5) == [(4, 5)]
    assert caption_frames(8, "spread", 5) == [(0, 1), (2, 1), (4, 1), (5, 1), (7, 1)]
    assert caption_frames(8, "all", 2) == [(f, 2) for f in range(8)]
    assert caption_frames(1, "spread", 5) == [(0, 5)]  # an image, or a one-frame clip
    assert caption_frames(8, "spread", 0) == []


# ---- frame choice by shots ----


def two_shots(first: int, total: int) -> list[Image.Image]:
    """A dark blue shot of ``first`` frames, then a cut to a bright red one; within a shot each frame is a little
    lighter than the one before (motion, not a cut)."""
    return [Image.new("RGB", (64, 48), (20 + i, 30 + i, 120) if i < first else (200, 40 + i, 40)) for i in range(total)]


def in_red_shot(frame: Image.Image) -> bool:
    red, _, blue = frame.convert("RGB").getpixel((32, 24))
    return red > blue


def test_a_cut_starts_a_shot_and_motion_or_fading_light_does_not():
    assert shot_starts(two_shots(9, 30)) == [0, 9]
    assert shot_starts(two_shots(0, 30)) == [0]
    assert shot_starts(grey_frames(30)) == [0]  # each frame 8 grey levels lighter than the last: no cut


def test_shot_frames_share_the_frames_by_shot_length_or_take_the_longest_shot():
    times, duration = [i / 10 for i in range(30)], 3.0
    # Shots: probes 0-8 (0 to 0.85 s, halfway between the probes at 0.8 and 0.9) and 9-29 (0.85 to 3 s).
    # 8 frames: one each, then 6 in proportion (1.7 and 4.3, the larger remainder first): 3 and 5, each the
    # probe shown at the middle of an equal part of its shot (0.14, 0.43, 0.71 s; 1.07, 1.50, 1.93, 2.36, 2.79 s).
    assert shot_frames(times, [0, 9], duration, 8, "shots") == [1, 4, 7, 10, 14, 19, 23, 27]
    # The longest shot alone: the middles of 8 equal parts of 0.85-3 s, the probe shown at each.
    assert shot_frames(times, [0, 9], duration, 8, "longest_shot") == [9, 12, 15, 17, 20, 23, 25, 28]
    # One shot: exactly the uniform frames.
    for choice in ("shots", "longest_shot"):
        assert shot_frames(times, [0], duration, 8, choice) == uniform_indices(times, duration, 8)
    # More shots than frames: the longest ones, each once, in time order; a short shot is never missed otherwise.
    assert shot_frames(times, [0, 2, 20], duration, 2, "shots") == [10, 24]
    assert shot_frames(times, [0, 2, 20], duration, 3, "shots") == [0, 10, 24]


def test_frame_choice_places_the_frames_by_the_cut_in_an_encoded_clip():
    data = clip_bytes(two_shots(9, 30))  # 12 fps: the cut at 0.75 s of 2.5 s
    uniform = read_clip(data, VideoConfig(frame_choice="uniform"))
    assert [in_red_shot(f) for f in uniform.frames] == [False, False, True, True, True, True, True, True]
    longest = read_clip(data, VideoConfig(frame_choice="longest_shot"))
    assert len(longest.frames) == 8 and all(in_red_shot(f) for f in longest.frames)
    assert min(longest.times) >= 0.75 and longest.times == sorted(longest.times)
    # Evenly over the red shot: its 1.75 s in 8 parts, each frame the probe shown at a part's middle (24 probes
    # over the 2.5 s clip: one every 0.104 s, each a frame shown for 1/12 s).
    middles = [0.75 + (i + 0.5) * 1.75 / 8 for i in range(8)]
    assert all(0 <= m - t <= 2.5 / 24 + 1 / 12 for t, m in zip(longest.times, middles, strict=True))
    # Both shots, in proportion to their length (0.71 s and 1.79 s: 3 and 5 of 8 frames).
    shots = read_clip(data, VideoConfig(frame_choice="shots"))
    assert [in_red_shot(f) for f in shots.frames] == [False, False, False, True, True, True, True, True]
    # A clip of one shot: the uniform frames, decoded the same.
    grey = clip_bytes(grey_frames(30))
    for choice in ("shots", "longest_shot"):
        assert (
            read_clip(grey, VideoConfig(frame_choice=choice)).times
            == read_clip(grey, VideoConfig(frame_choice="uniform")).times
        )
