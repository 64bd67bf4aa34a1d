"""Reading a video member with PyAV: a few frames sampled uniformly in time (or placed by the clip's shots),
decoded by seeking, never the whole clip; every limit checked from the header first, and every kind of damage
turned into a drop reason."""

from __future__ import annotations

import bisect
import io
import time
from dataclasses import dataclass

from ..config import VideoConfig

VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "mov", "avi")
# Only the demuxers of the containers above: a file named .mp4 is never handed to a playlist demuxer (HLS, concat)
# that would open other files or URLs it names.
DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi"
# Cut short: the packets end this much before the header's duration (one missing frame is rounding, not damage).
CUT_TOLERANCE = 0.1
# Shot detection (frame_choice shots, longest_shot) looks at this many frames per frame it keeps, sampled
# uniformly; odd, so that one shot gives exactly the uniform frames.
PROBES_PER_FRAME = 3
# A new shot starts where two neighbouring probes differ by more than this: the mean absolute difference of their
# hue, saturation and value on a 0-255 scale (PySceneDetect's ContentDetector measure and default threshold), the
# hue taken round its circle and counted only as far as the pixels are saturated: a near-grey pixel's hue is noise
# (an mpeg4 encode of grey frames tinted by 2 levels turns it by 70 between frames).
SHOT_THRESHOLD = 27.0
SIGNATURE_SIDE = 32  # probes are compared as thumbnails this wide: motion blurs away, a cut does not


class VideoRefused(Exception):
    """The video cannot be used: ``reason`` is a drop reason (``reasons.DROP_REASONS``), ``detail`` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True, slots=True)
class Clip:
    """The sampled frames of a video (upright RGB PIL images, in time order), their times in seconds from the
    clip's start, the clip's duration in seconds, and how many frames were decoded to get them."""

    frames: list
    times: list[float]
    duration: float
    decoded: int = 0


def frames_to_sample(duration: float, config: VideoConfig) -> int:
    """How many frames to sample: ``config.frames``, or ``config.fps`` per second capped at ``config.frames``."""
    if config.fps is None:
        return config.frames
    return max(1, min(config.frames, int(duration * config.fps + 0.5)))


def uniform_indices(starts: list[float], duration: float, count: int) -> list[int]:
    """Indices into ``starts`` (frame start times in seconds, ascending, from 0) of ``count`` frames sampled
    uniformly in time: the frames shown at the middle of ``count`` equal segments of the clip, each once.

    In time rather than by index, so a variable frame rate still samples the clip evenly; at a constant rate
    this is frame ``floor((i + 0.5) * n / count)`` of ``n``.
    """
    chosen = []
    for i in range(count):
        at = (i + 0.5) * duration / count
        index = max(0, bisect.bisect_right(starts, at + 1e-9) - 1)
        if not chosen or chosen[-1] != index:
            chosen.append(index)
    return chosen


def shot_starts(frames: list, threshold: float = SHOT_THRESHOLD) -> list[int]:
    """Indices of the frames (PIL images in time order) that begin a shot: 0, and every frame whose hue,
    saturation and value differ from the frame before by more than ``threshold`` on average (0-255 scale; the
    hue difference weighed by the two pixels' mean saturation)."""
    import numpy as np
    from PIL import Image

    def signature(frame):
        thumb = frame.convert("RGB").resize((SIGNATURE_SIDE, SIGNATURE_SIDE), Image.Resampling.BILINEAR)
        return np.asarray(thumb.convert("HSV"), dtype=np.float32)

    def difference(a, b) -> float:
        hue = np.abs(a[..., 0] - b[..., 0])
        hue = np.minimum(hue, 256 - hue) * (a[..., 1] + b[..., 1]) / 510
        return float((hue.mean() + np.abs(a[..., 1:] - b[..., 1:]).mean(axis=(0, 1)).sum()) / 3)

    signatures = [signature(frame) for frame in frames]
    return [0] + [i for i in range(1, len(signatures)) if difference(signatures[i - 1], signatures[i]) > threshold]


def shot_frames(times: list[float], starts: list[int], duration: float, count: int, choice: str) -> list[int]:
    """Which of the probe frames at ``times`` (seconds, ascending) to keep, given the probes that begin a shot
    (``shot_starts``): ``count`` frames, each at most once, in time order.

    A shot spans from halfway between its first probe and the probe before to halfway to the next shot's first
    probe (the clip's start and end at the ends). ``shots``: every shot gets frames in proportion to its length,
    at least one each (the longest shots first when there are more shots than frames), so a short shot is never
    missed; ``longest_shot``: all ``count`` frames come from the longest shot, what a clip mostly shows. Within a
    shot, the frames are the probes shown at the middles of equal segments of it, as ``uniform_indices`` places
    them in a whole clip, so a clip of one shot gives the uniform frames.
    """
    ends = [*starts[1:], len(times)]
    bounds = [0.0] + [(times[i - 1] + times[i]) / 2 for i in starts[1:]] + [duration]
    lengths = [bounds[j + 1] - bounds[j] for j in range(len(starts))]
    by_length = sorted(range(len(starts)), key=lambda j: (-lengths[j], j))
    if choice == "longest_shot":
        share = {by_length[0]: count}
    elif choice == "shots":
        share = {j: 1 for j in by_length[:count]}
        spare = count - len(share)
        if spare > 0:
            total = sum(lengths) or 1.0
            exact = {j: spare * lengths[j] / total for j in share}
            for j in share:
                share[j] += int(exact[j])
            left = spare - sum(int(v) for v in exact.values())
            for j in sorted(share, key=lambda j: (-(exact[j] - int(exact[j])), j))[:left]:
                share[j] += 1
    else:
        raise ValueError(f"unknown frame_choice {choice!r}")
    chosen: list[int] = []
    for j in sorted(share):
        probes = range(starts[j], ends[j])
        for i in range(share[j]):
            at = bounds[j] + (i + 0.5) * lengths[j] / share[j]
            shown = max((p for p in probes if times[p] <= at + 1e-9), default=probes[0])
            if shown not in chosen:
                chosen.append(shown)
    return chosen


def read_clip(data: bytes, config: VideoConfig) -> Clip:
    """Sample and decode frames of the video in ``data``; raises ``VideoRefused`` with a drop reason.

    Order of work, cheapest first: the container header (size and duration limits), then the packet index
    (demuxing only, no decoding: real duration, keyframes, a file cut short), then one seek per keyframe interval
    that holds a sampled frame, decoding forward only up to that frame.

    Args:
        data: the video member's bytes.
        config: sampling and limits.
    """
    import av

    deadline = time.monotonic() + config.decode_seconds
    try:
        container = av.open(io.BytesIO(data), mode="r", options={"format_whitelist": DEMUXERS})
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise VideoRefused("undecodable_video", f"not a video container PyAV opens: {exc}") from None
    try:
        with container:
            stream = _video_stream(container)
            _check_header(container, stream, config)
            index = _packet_index(container, stream, config, deadline)
            return _decode(container, stream, index, config, deadline)
    except (av.FFmpegError, OSError, ValueError, EOFError, MemoryError) as exc:
        raise VideoRefused("undecodable_video", f"{type(exc).__name__}: {exc}") from None


def _video_stream(container):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        what = "audio only" if kinds == ["audio"] else f"streams: {', '.join(kinds) or 'none'}"
        raise VideoRefused("no_video_stream", f"no video stream ({what})")
    stream = container.streams.video[0]
    # Decoding runs beside the models' threads and samples a handful of frames: one thread starts at once and
    # leaves the cores to torch.
    stream.codec_context.thread_count = 1
    return stream


def _header_seconds(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _check_header(container, stream, config: VideoConfig) -> None:
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > config.max_pixels:
        raise VideoRefused("video_too_large", f"{width}x{height} is over video.max_pixels {config.max_pixels} (header)")
    seconds = _header_seconds(container, stream)
    if seconds is not None and seconds > config.max_seconds:
        raise VideoRefused(
            "video_too_long", f"{seconds:.1f} s is over video.max_seconds {config.max_seconds:g} (header)"
        )


@dataclass(frozen=True, slots=True)
class _Index:
    starts: list[int]  # presentation timestamps of every frame, ascending (stream time base)
    keyframes: list[int]  # presentation timestamps of keyframes, ascending
    end: int  # where the last frame ends
    time_base: float

    def seconds(self, pts: int) -> float:
        return (pts - self.starts[0]) * self.time_base


def _packet_index(container, stream, config: VideoConfig, deadline: float) -> _Index:
    """Every frame's timestamp and the keyframes, from the packets alone (cheap: nothing is decoded)."""
    time_base = float(stream.time_base)
    starts, keyframes, first, end = [], [], None, None
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except (EOFError, OSError, ValueError) as exc:
            if not starts:
                raise VideoRefused("undecodable_video", f"no packet reads: {exc}") from None
            # The index promised more packets than the file holds: the bytes end early.
            raise VideoRefused("video_cut_short", f"the packets break off after {len(starts)}: {exc}") from None
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None or packet.size == 0:
            continue
        if packet.is_corrupt:  # the demuxer's flag for a packet whose bytes run past the end of the file
            raise VideoRefused("video_cut_short", f"packet {len(starts) + 1} is cut off: the file ends inside it")
        starts.append(pts)
        if packet.is_keyframe:
            keyframes.append(pts)
        first = pts if first is None else min(first, pts)
        end = max(end or pts, pts + (packet.duration or 0))
        if len(starts) % 64 == 0:
            _check_time(deadline, config)
            if (pts - first) * time_base > config.max_seconds:
                raise VideoRefused("video_too_long", f"packets run past video.max_seconds {config.max_seconds:g}")
    if not starts:
        raise VideoRefused("undecodable_video", "no decodable frame: the video stream holds no packet")
    starts.sort()
    if end <= starts[-1]:  # no packet durations: assume the last frame lasts as long as the average one
        end = starts[-1] + max(1, (starts[-1] - starts[0]) // max(1, len(starts) - 1))
    index = _Index(starts, sorted(keyframes) or starts[:1], end, time_base)
    _check_duration(container, stream, index, config)
    return index


def _check_duration(container, stream, index: _Index, config: VideoConfig) -> None:
    seconds = index.seconds(index.end)
    if seconds > config.max_seconds:
        raise VideoRefused("video_too_long", f"{seconds:.1f} s is over video.max_seconds {config.max_seconds:g}")
    declared = _header_seconds(container, stream)
    if declared and seconds < declared * (1 - CUT_TOLERANCE) - index.time_base:
        raise VideoRefused("video_cut_short", f"the frames end at {seconds:.2f} s of the {declared:.2f} s declared")


def _check_time(deadline: float, config: VideoConfig) -> None:
    if time.monotonic() > deadline:
        raise VideoRefused("video_decode_timeout", f"reading took over video.decode_seconds {config.decode_seconds:g}")


def _decode(container, stream, index: _Index, config: VideoConfig, deadline: float) -> Clip:
    duration = index.seconds(index.end)
    seconds = [index.seconds(pts) for pts in index.starts]
    count = frames_to_sample(duration, config)
    if config.frame_choice == "uniform":
        wanted = [index.starts[i] for i in uniform_indices(seconds, duration, count)]
        frames, times, decoded = _decode_at(container, stream, index, wanted, config, deadline)
    else:
        probes = uniform_indices(seconds, duration, min(len(seconds), PROBES_PER_FRAME * count))
        frames, times, decoded = _decode_at(
            container, stream, index, [index.starts[i] for i in probes], config, deadline
        )
        if frames:
            keep = shot_frames(times, shot_starts(frames), duration, count, config.frame_choice)
            frames, times = [frames[i] for i in keep], [times[i] for i in keep]
    if not frames:
        raise VideoRefused("undecodable_video", "no decodable frame")
    return Clip(frames, times, round(duration, 6), decoded)


def _decode_at(container, stream, index: _Index, wanted: list[int], config: VideoConfig, deadline: float):
    """The frames at presentation timestamps ``wanted`` (ascending) as ``(images, seconds, frames decoded)``; a
    frame the stream breaks before is left out."""
    frames, times, decoded = [], [], [0]
    frames_iter, position = None, None
    for target in wanted:
        keyframe = index.keyframes[max(0, bisect.bisect_right(index.keyframes, target) - 1)]
        # Decoding on from where the decoder stands is cheaper than seeking whenever no keyframe lies between.
        if frames_iter is None or position is None or not keyframe <= position < target:
            container.seek(keyframe, stream=stream, backward=True, any_frame=False)
            frames_iter = container.decode(stream)
        frame = _frame_at(frames_iter, target, config, deadline, decoded)
        if frame is None:
            frames_iter = None
            continue
        position = frame.pts
        if frame.width * frame.height > config.max_pixels:  # a stream may change size after its header
            raise VideoRefused("video_too_large", f"a {frame.width}x{frame.height} frame is over video.max_pixels")
        frames.append(_upright(frame))
        times.append(round(index.seconds(frame.pts), 6))
    return frames, times, decoded[0]


def _frame_at(frames_iter, target: int, config: VideoConfig, deadline: float, decoded: list[int]):
    """The first decoded frame at or after ``target``; None when the stream ends or breaks before it.
    ``decoded[0]`` counts every frame decoded on the way."""
    while True:
        _check_time(deadline, config)
        try:
            frame = next(frames_iter)
        except StopIteration:
            return None
        except (EOFError, OSError, ValueError):
            return None
        decoded[0] += 1
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is not None and pts >= target:
            frame.pts = pts
            return frame


def _upright(frame):
    """The frame as an RGB PIL image the way a player shows it: the display matrix's rotation applied."""
    image = frame.to_image()
    rotation = round(getattr(frame, "rotation", 0) or 0) % 360
    # PyAV reports the matrix's counter-clockwise angle; PIL's rotate turns counter-clockwise too.
    return image.rotate(rotation, expand=True) if rotation else image
