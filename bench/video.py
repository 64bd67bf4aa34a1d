"""Video benchmarks: which frames to caption from, how much of a video run is frame decoding, and how time and
memory per clip grow with ``video.frames`` and with the clip's length. Prints figures; asserts nothing.

    python -m bench.video caption-frames [--clips 512]   # middle / spread / all, on fresh demo clips
    python -m bench.video similarity [--clips 256]   # AUC of ITM, ITC and CLIP on stills and on clips (meanP)
    python -m bench.video --threads 1 decode-share   # a `capfilt run demo-video` of 4 x 64 clips, timed inside
    python -m bench.video length [--frames 4 8 16]   # 2 s vs 60 s clips: decode and model time, peak memory
    python -m bench.video frame-choice [--clips 256]   # uniform / shots / longest_shot on clips with and without a cut
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from capfilt.demo import world
from capfilt.demo.video_world import encode_clip, render_clip
from capfilt.pipeline.config import VideoConfig


def caption_frames(args) -> None:
    """The three choices of frames to caption from, on the same fresh clips (~40% right web captions), and
    still images of the same world for comparison: do the image models still work on frames?"""
    import torch

    from capfilt.demo.measure import load_models, measure_models
    from capfilt.models.loading import EMBEDDED_DIR

    torch.set_num_threads(args.threads)
    models = load_models(EMBEDDED_DIR)
    print(f"{args.clips} fresh samples each (seed {args.seed}), ~40% right web captions, threshold 0.5\n")
    print(
        "| input | captions from | caption exact | clips with a right one | ITM AUC | kept accuracy | clean yield "
        "| seconds |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = [("images", None)] + [("clips", VideoConfig(frames=args.frames, caption_frames=m)) for m in args.modes]
    for name, video in runs:
        started = time.monotonic()
        m = measure_models(*models, args.clips, args.seed, video=video)
        seconds = time.monotonic() - started
        e = m["evaluation"]
        mode = video.caption_frames if video else "the image"
        print(
            f"| {name} | {mode} | {m['caption_exact']:.3f} | {m['caption_any']:.3f} | {m['itm']['auc']:.4f} "
            f"| {e['kept_accuracy']:.3f} | {e['clean_yield']:.3f} | {seconds:.1f} |",
            flush=True,
        )


def similarity(args) -> None:
    """AUC of right against wrong candidates for ITM and the two similarity backends (ITC, CLIP), on stills and
    on clips (a clip's similarity: the cosine with the mean of its frames' normalised embeddings)."""
    import torch

    from capfilt.demo.measure import load_models, load_similarities, measure_models
    from capfilt.models.loading import EMBEDDED_DIR

    torch.set_num_threads(args.threads)
    captioner, scorer = load_models(EMBEDDED_DIR)
    backends = load_similarities(EMBEDDED_DIR, scorer)
    print(f"{args.clips} fresh samples each (seed {args.seed}), ~40% right web captions\n")
    print(
        "| input | pairs | ITM AUC | "
        + " | ".join(f"{name} AUC | {name} mean right / wrong" for name in backends)
        + " |"
    )
    print("| --- | --- | --- |" + " --- | --- |" * len(backends))
    for name, video in (("stills", None), (f"clips, {args.frames} frames", VideoConfig(frames=args.frames))):
        m = measure_models(captioner, scorer, args.clips, args.seed, similarities=backends, video=video)
        cells = [f"{f['auc']:.3f} | {f['correct_mean']:.3f} / {f['wrong_mean']:.3f}" for f in m["similarity"].values()]
        print(f"| {name} | {m['itm']['pairs']} | {m['itm']['auc']:.4f} | " + " | ".join(cells) + " |", flush=True)


def decode_share(args) -> None:
    """Wall time of a whole `capfilt run demo-video` (model loading and Beam included) against the time spent
    inside ``read_clip`` during it (the decode stage and the report's strips), measured in the same process (the
    FnApiRunner runs in memory): as wall-clock time, which also counts waiting for the GIL and a core while the
    models run beside it, and as the calling thread's CPU time, the decoding work itself."""
    from capfilt import cli
    from capfilt.demo.world import write_demo_shards
    from capfilt.pipeline.shard import decode, examples, video

    wall_spent, cpu_spent = [], []

    def timed(*a, **k):
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return video.read_clip(*a, **k)
        finally:
            wall_spent.append(time.perf_counter() - started)
            cpu_spent.append(time.thread_time() - cpu)

    # Both users of read_clip: the shard's decode stage and the report's frame strips.
    decode.read_clip = examples.read_clip = timed
    with tempfile.TemporaryDirectory() as folder:
        write_demo_shards(f"{folder}/in", args.shards, args.per_shard, seed=args.seed, video=True)
        started = time.monotonic()
        argv = ["run", "demo-video", "--input", f"{folder}/in/*.tar", "--output", f"{folder}/out"]
        sets = ["--set", f"runtime.threads={args.threads}", "--set", f"runtime.prefetch_batches={args.prefetch}"]
        code = cli.main([*argv, *sets])
        wall = time.monotonic() - started
    inside, cpu = sum(wall_spent), sum(cpu_spent)
    print(
        f"exit {code}; {len(wall_spent)} clips read; wall {wall:.2f} s; inside read_clip {inside:.2f} s wall-clock "
        f"({100 * inside / wall:.1f}% of wall), {cpu:.2f} s CPU ({100 * cpu / wall:.1f}% of wall, "
        f"{1000 * cpu / len(cpu_spent):.2f} ms per clip)"
    )


def long_clip(seconds: int, fps: int, seed: int, size: int = world.IMAGE_SIZE) -> bytes:
    """A demo-world clip of ``seconds`` at ``fps``, ``size`` pixels square, keyframes every 2 s
    (``video_world.encode_clip``)."""
    rng = random.Random(seed)
    scene = world.sample_scene(rng)
    return encode_clip(render_clip(scene, rng, seconds * fps, size), "mp4", fps)


MEMORY = """
import json, sys, time
from capfilt.pipeline.config import VideoConfig
from capfilt.pipeline.shard.video import read_clip
def status(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) / 1024
data = open(sys.argv[1], "rb").read()
config = VideoConfig(frames=int(sys.argv[2]))
read_clip(data, config)  # imports and FFmpeg's first allocations out of the way
open("/proc/self/clear_refs", "w").write("5")  # peak RSS (VmHWM) starts again from here
before = status("VmRSS")
runs = []
for _ in range(5):
    t = time.perf_counter(); clip = read_clip(data, config); runs.append(time.perf_counter() - t)
extra = status("VmHWM") - before
import io, av
from capfilt.pipeline.shard import video
index = []
for _ in range(5):  # the packet index pass alone: demuxing every packet, nothing decoded
    with av.open(io.BytesIO(data), options={"format_whitelist": video.DEMUXERS}) as container:
        t = time.perf_counter()
        video._packet_index(container, container.streams.video[0], config, time.monotonic() + 60)
        index.append(time.perf_counter() - t)
print(json.dumps({"seconds": sorted(runs)[2], "frames": len(clip.frames), "decoded": clip.decoded,
                  "extra_mib": extra, "index": sorted(index)[2]}))
"""


def decode_everything(data: bytes) -> float:
    import io

    import av

    started = time.perf_counter()
    with av.open(io.BytesIO(data)) as container:
        for _ in container.decode(container.streams.video[0]):
            pass  # decoded only: converting every frame to RGB as well would flatter seeking more
    return time.perf_counter() - started


def length(args) -> None:
    """Per clip: sampling ``frames`` frames (median of 5, in a fresh process; peak memory above its baseline), the
    models' work on them (captions from 5 frames, ITM of 6 candidates over every frame), and decoding every frame,
    for clips of ``args.lengths`` seconds."""
    import torch

    from capfilt.demo.measure import load_models
    from capfilt.models.loading import EMBEDDED_DIR
    from capfilt.pipeline.shard import annotate
    from capfilt.pipeline.shard.video import read_clip

    torch.set_num_threads(args.threads)
    captioner, scorer = load_models(EMBEDDED_DIR)
    print(
        f"demo-world clips, {args.size}x{args.size} h264 at {args.fps} fps, keyframe every 2 s; embedded models, "
        f"{args.threads} threads\n"
    )
    print(
        "| clip | bytes | frames sampled | frames decoded | sampling (median of 5) | of which the packet index "
        "| peak memory above baseline | models per clip (median of 3) | decoding every frame |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for seconds in args.lengths:
            data = long_clip(seconds, args.fps, args.seed, args.size)
            path = Path(folder) / f"{seconds}.mp4"
            path.write_bytes(data)
            everything = decode_everything(data)
            for frames in args.frames:
                command = [sys.executable, "-c", MEMORY, str(path), str(frames)]
                measured = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
                clip = read_clip(data, VideoConfig(frames=frames))
                model = sorted(_model_seconds(annotate, captioner, scorer, clip.frames) for _ in range(3))[1]
                print(
                    f"| {seconds} s | {len(data)} | {measured['frames']} | {measured['decoded']} "
                    f"| {1000 * measured['seconds']:.1f} ms | {1000 * measured['index']:.1f} ms "
                    f"| {measured['extra_mib']:.1f} MiB | {1000 * model:.0f} ms "
                    f"| {1000 * everything:.0f} ms |",
                    flush=True,
                )


def frame_choice(args) -> None:
    """What each ``video.frame_choice`` looks at, on fresh demo clips of which half cut to another scene (for
    20-40% of the clip, ``video_world.CUT_SHARE``), told apart by the frames' times against the cut's ground truth;
    and what it costs to decode, per clip, median of interleaved rounds."""
    import statistics

    from capfilt.demo.video_world import CUT_SHARE, FPS, Cut, make_clip
    from capfilt.pipeline.shard.video import read_clip

    rng = random.Random(f"bench-frame-choice/{args.seed}")
    clips = []
    for _ in range(args.clips):
        scene = world.sample_scene(rng)
        cut = Cut(world.sample_scene(rng), rng.uniform(*CUT_SHARE), rng.random() < 0.5) if len(clips) % 2 else None
        _, data, truth = make_clip(scene, rng, cut, rng)
        clips.append((data, truth))
    choices = ("uniform", "shots", "longest_shot")
    configs = {c: VideoConfig(frames=args.frames, frame_choice=c) for c in choices}
    seconds = {c: [] for c in choices}
    sampled = {}
    for _ in range(args.rounds):
        for choice in choices:
            started = time.perf_counter()
            sampled[choice] = [read_clip(data, configs[choice]) for data, _ in clips]
            seconds[choice].append((time.perf_counter() - started) / len(clips))
    cut = [i for i, (_, truth) in enumerate(clips) if truth]
    plain = [i for i, (_, truth) in enumerate(clips) if not truth]

    def inside(time_: float, truth: dict) -> bool:  # the json's seconds are rounded to 4 places
        return round(truth["start"] * FPS) <= round(time_ * FPS) < round(truth["end"] * FPS)

    print(f"{len(cut)} clips with a cut and {len(plain)} without, {args.frames} frames each (seed {args.seed})\n")
    print(
        "| frame_choice | cut clips: frames of the captioned scene | cut clips seen in both scenes "
        "| clips without a cut: the uniform frames | frames | decode ms per clip (spread) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for choice in choices:
        share = statistics.mean(
            sum(not inside(t, clips[i][1]) for t in sampled[choice][i].times) / len(sampled[choice][i].times)
            for i in cut
        )
        both = sum(
            0 < sum(inside(t, clips[i][1]) for t in sampled[choice][i].times) < len(sampled[choice][i].times)
            for i in cut
        )
        same = sum(sampled[choice][i].times == sampled["uniform"][i].times for i in plain)
        frames = statistics.mean(len(c.frames) for c in sampled[choice])
        ms = [1000 * s for s in seconds[choice]]
        print(
            f"| {choice} | {share:.3f} | {both}/{len(cut)} | {same}/{len(plain)} | {frames:.2f} "
            f"| {statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f}) |",
            flush=True,
        )


def _model_seconds(annotate, captioner, scorer, frames: list) -> float:
    from capfilt.pipeline.shard.sample import Sample

    sample = Sample("clip", media="video", frames=list(frames), web_text=world.PROMPT + " a red circle")
    started = time.perf_counter()
    annotate.caption_batch([sample], captioner, 0, "spread")
    annotate.score_batch([sample], scorer)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3000)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("caption-frames")
    c.add_argument("--clips", type=int, default=512)
    c.add_argument("--frames", type=int, default=8)
    c.add_argument("--modes", nargs="+", default=["middle", "spread", "all"])
    v = commands.add_parser("similarity")
    v.add_argument("--clips", type=int, default=256)
    v.add_argument("--frames", type=int, default=8)
    d = commands.add_parser("decode-share")
    d.add_argument("--shards", type=int, default=4)
    d.add_argument("--per-shard", type=int, default=64)
    d.add_argument("--prefetch", type=int, default=2, help="runtime.prefetch_batches; 0 decodes inline, in series")
    s = commands.add_parser("length")
    s.add_argument("--frames", type=int, nargs="+", default=[4, 8, 16])
    s.add_argument("--fps", type=int, default=24)
    s.add_argument("--lengths", type=int, nargs="+", default=[2, 60, 600], help="clip lengths in seconds")
    s.add_argument("--size", type=int, default=128, help="frame side in pixels (the demo's is 128)")
    f = commands.add_parser("frame-choice")
    f.add_argument("--clips", type=int, default=256)
    f.add_argument("--frames", type=int, default=8)
    f.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run = {"caption-frames": caption_frames, "similarity": similarity, "decode-share": decode_share, "length": length}
    run["frame-choice"] = frame_choice
    run[args.command](args)


if __name__ == "__main__":
    main()
