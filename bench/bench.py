"""capfilt's benchmark: pipeline throughput against the floor (``bench.floor``, the same model work written
against transformers alone), memory as shards grow, and scaling with worker processes. Prints figures; asserts
nothing (goals are judged from the figures).

    python -m bench.bench throughput --captioner DIR --itm DIR [--images 32 --num-captions 2 --max-length 16]
    python -m bench.bench profile --captioner DIR --itm DIR   # the same run, phase by phase on both sides
    python -m bench.bench per-image --captioner DIR --itm DIR  # cost per image (slope 32 -> 96) at the defaults
    python -m bench.bench dtype-speed --captioner DIR --itm DIR --dtype auto   # the pipeline: auto vs float32
    python -m bench.bench memory       # peak RSS, 2 shards vs 8 shards of the same size (demo models)
    python -m bench.bench workers      # 1 vs 2 worker processes on the demo, per core and on all cores
    python -m bench.bench precision --captioner DIR --itm DIR   # bfloat16 vs float32: speed and score drift
    python -m bench.bench itm-cost --itm DIR   # an extra candidate caption against a full image-text pair
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

from capfilt.pipeline.config import PACKAGED_CONFIG
from capfilt.pipeline.cores import usable_cores
from capfilt.pipeline.shard.tar_writer import DeterministicTarWriter

MEASURE = (
    "import resource, subprocess, sys, time; t = time.monotonic(); code = subprocess.call(sys.argv[1:]); "
    "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print('MEASURE', code, time.monotonic() - t, r.ru_maxrss, r.ru_utime + r.ru_stime)"
)

# CPU seconds of the measured process tree, kept by ``measured`` for the run that just ended: on a machine
# shared with other work they move far less than wall time does.
LAST_CPU_SECONDS = [0.0]


def measured(
    command: list[str], env: dict | None = None, cores: list[int] | None = None, cwd: Path | None = None
) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of the largest process, and stdout of ``command``, run on ``cores`` (all
    by default; child processes inherit the affinity) in ``cwd`` (made if missing). Its CPU seconds go to
    ``LAST_CPU_SECONDS``."""
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    if cwd is not None:
        cwd.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env, preexec_fn=pin, cwd=cwd
    )
    line = [x for x in result.stdout.splitlines() if x.startswith("MEASURE")][-1].split()
    if line[1] != "0":
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{result.stderr[-3000:]}")
    LAST_CPU_SECONDS[0] = float(line[4])
    return float(line[2]), int(line[3]) / 1024, result.stdout


def photo(rng: random.Random, size=(480, 360)) -> bytes:
    """A photo-sized JPEG with gradients and shapes, so decoding costs what a web image costs."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse([x, y, x + rng.randrange(20, 160), y + rng.randrange(20, 160)], fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_shards(folder: Path, shards: int, per_shard: int, seed: int = 0, size=(480, 360)) -> str:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        with open(folder / f"{shard:05d}.tar", "wb") as handle, DeterministicTarWriter(handle) as tar:
            for i in range(per_shard):
                key = f"{shard:05d}_{i:05d}"
                tar.add(f"{key}.jpg", photo(rng, size))
                tar.add(f"{key}.txt", f"a photo of a red cat number {i}".encode())
                tar.add(f"{key}.json", json.dumps({"url": f"https://example.com/{key}.jpg"}).encode())
    return str(folder / "*.tar")


def pipeline_command(pattern: str, out: Path, sets: list[str], beam: list[str] = ()) -> list[str]:
    command = [sys.executable, "-m", "capfilt", "run", "demo", "--input", pattern, "--output", str(out), "--overwrite"]
    for item in sets:
        command += ["--set", item]
    return command + (["--", *beam] if beam else [])


def load_average() -> float:
    return os.getloadavg()[0]


def throughput_commands(args, pattern: str, out: Path, scores: Path) -> tuple[list[str], list[str]]:
    """The floor's command and the pipeline's, doing the same work on the same shards and checkpoints."""
    threads = args.threads or usable_cores()
    per_batch = args.batch_size * (args.num_captions + 1)  # the whole batch's candidates in one ITM text pass
    sets = [
        *work_settings(args),
        f"captioner.batch_size={args.batch_size}",
        f"filter.batch_size={per_batch}",
        "filter.threshold=0",
        f"runtime.threads={threads}",
        f"runtime.dtype={args.dtype}",
        f"runtime.device={args.device}",
    ]
    floor = floor_command(args, pattern, threads, resolved_dtype(args.dtype, args.device))
    floor += ["--device", args.device, "--scores", str(scores)]
    return floor, pipeline_command(pattern, out, sets)


def work_settings(args) -> list[str]:
    """The pipeline's settings that fix the work both sides do: the models and the captions' number and length."""
    return [
        f"captioner.model={args.captioner}",
        f"filter.model={args.itm}",
        f"captioner.num_captions={args.num_captions}",
        f"captioner.min_length={args.max_length}",
        f"captioner.max_length={args.max_length}",
    ]


def floor_command(args, pattern: str, threads: int, dtype: str) -> list[str]:
    """``bench.floor`` doing that work on ``pattern`` in batches of ``--batch-size`` images."""
    floor = [sys.executable, "-m", "bench.floor", "--input", pattern, "--captioner", args.captioner]
    floor += ["--itm", args.itm, f"--num-captions={args.num_captions}", f"--length={args.max_length}"]
    return floor + [f"--batch-size={args.batch_size}", f"--threads={threads}", f"--dtype={dtype}"]


def resolved_dtype(dtype: str, device: str = "cpu") -> str:
    """What the pipeline runs ``dtype`` as on ``device`` here (the floor takes a plain torch dtype)."""
    from capfilt.models.loading import resolve_dtype

    return resolve_dtype(dtype, device)


def web_score_drift(scores: Path, out: Path) -> float:
    """Largest difference between the floor's and the pipeline's ITM score of the same web caption: both ran
    the same model on the same image and text, so anything over rounding means they did different work."""
    import pyarrow.parquet as pq

    floor = json.loads(scores.read_text())
    drift = 0.0
    for path in out.glob("*.parquet"):
        for row in pq.read_table(path, columns=["key", "web_score"]).to_pylist():
            drift = max(drift, abs(row["web_score"] - floor[row["key"]]))
    return drift


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def throughput(args) -> None:
    """The pipeline against the floor, interleaved (floor, pipeline, floor, ...) so that load from other
    processes falls on both sides alike; medians and their ratio at the end."""
    work = Path(tempfile.mkdtemp(prefix="capfilt-bench-"))
    pattern = write_shards(work / "in", args.shards, args.images // args.shards)
    floor, pipeline = throughput_commands(args, pattern, work / "out", work / "floor_scores.json")
    rows = []
    for round_ in range(args.repeat):
        load = load_average()
        floor_s, floor_rss, _ = measured(floor)
        floor_cpu = LAST_CPU_SECONDS[0]
        pipe_s, pipe_rss, _ = measured(pipeline)
        pipe_cpu = LAST_CPU_SECONDS[0]
        drift = web_score_drift(work / "floor_scores.json", work / "out")
        rows.append((floor_s, pipe_s, floor_rss, pipe_rss, floor_cpu, pipe_cpu))
        print(
            f"round {round_ + 1} (load {load:.2f}->{load_average():.2f}): floor {args.images / floor_s:.3f} img/s "
            f"({floor_s:.1f} s, CPU {floor_cpu:.1f} s, {floor_rss:.0f} MiB) | pipeline {args.images / pipe_s:.3f} "
            f"img/s ({pipe_s:.1f} s, CPU {pipe_cpu:.1f} s, {pipe_rss:.0f} MiB) | pipeline/floor {floor_s / pipe_s:.3f}"
            f" (CPU {floor_cpu / pipe_cpu:.3f}) | web score drift {drift:.1e}",
            flush=True,
        )
    floor_s, pipe_s = median([r[0] for r in rows]), median([r[1] for r in rows])
    floor_cpu, pipe_cpu = median([r[4] for r in rows]), median([r[5] for r in rows])
    print(
        f"median of {len(rows)}: floor {floor_s:.1f} s ({args.images / floor_s:.3f} img/s), pipeline {pipe_s:.1f} s "
        f"({args.images / pipe_s:.3f} img/s), pipeline/floor throughput {floor_s / pipe_s:.3f} (CPU seconds "
        f"{floor_cpu:.1f} / {pipe_cpu:.1f} = {floor_cpu / pipe_cpu:.3f}); peak RSS floor "
        f"{max(r[2] for r in rows):.0f} MiB, pipeline {max(r[3] for r in rows):.0f} MiB"
    )


def default_commands(args, pattern: str, out: Path, dtype: str) -> tuple[list[str], list[str]]:
    """The floor's command and the pipeline's at the pipeline's default settings: only what fixes the work is
    set (the models, ``--num-captions`` captions of exactly ``--max-length`` tokens, every candidate scored and
    nothing dropped, the dtype); batch sizes, threads and prefetching are what a user gets: the configuration's
    ``defaults``, not the ``demo`` pipeline's (which ``capfilt run`` runs unless named another), whose batches
    are sized for its tiny models."""
    defaults = yaml.safe_load(PACKAGED_CONFIG.read_text(encoding="utf-8"))["defaults"]
    batches = [f"{role}.batch_size={defaults[role]['batch_size']}" for role in ("captioner", "filter")]
    sets = [*work_settings(args), *batches, "filter.policy=score_only", f"runtime.dtype={dtype}"]
    floor = floor_command(args, pattern, usable_cores(), resolved_dtype(dtype))
    return floor, pipeline_command(pattern, out, sets)


def spread(values: list[float]) -> str:
    return f"{median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def per_image(args) -> None:
    """Cost per image and fixed cost of the pipeline at its default settings against the floor: the per-image
    cost is the slope of wall seconds between the two ``--images`` counts (start-up, model loading and the
    report cancel), the fixed cost the intercept. Each round runs both sides at both counts, the order reversed
    every other round so that drift in the machine's load falls on both; per round and then as medians with
    their spread, for each ``--dtypes``."""
    work = Path(tempfile.mkdtemp(prefix="capfilt-bench-"))
    small, large = args.images
    patterns = {n: write_shards(work / f"in{n}", args.shards, n // args.shards) for n in (small, large)}
    for dtype in args.dtypes:
        figures: dict[str, list[float]] = {"ratio": [], "floor": [], "pipeline": [], "fixed": []}
        for round_ in range(args.repeat):
            load = load_average()
            runs = [(side, n) for n in (small, large) for side in (0, 1)]
            seconds, cpu = {}, {}
            for side, n in runs if round_ % 2 == 0 else runs[::-1]:
                command = default_commands(args, patterns[n], work / "out", dtype)[side]
                if side == 1:  # a variant of the pipeline's defaults being tried, if any
                    command += [item for setting in args.set for item in ("--set", setting)]
                env = {**os.environ, **dict(item.split("=", 1) for item in args.env)} if side == 1 else None
                seconds[side, n] = measured(command, env=env)[0]
                cpu[side, n] = LAST_CPU_SECONDS[0]
            slope = {side: (seconds[side, large] - seconds[side, small]) / (large - small) for side in (0, 1)}
            fixed = {side: seconds[side, small] - slope[side] * small for side in (0, 1)}
            cpu_slope = {side: (cpu[side, large] - cpu[side, small]) / (large - small) for side in (0, 1)}
            figures["ratio"].append(slope[0] / slope[1])
            figures["floor"].append(slope[0])
            figures["pipeline"].append(slope[1])
            figures["fixed"].append(fixed[1] - fixed[0])
            print(
                f"{dtype} round {round_ + 1} (load {load:.2f}->{load_average():.2f}): per image floor "
                f"{slope[0]:.3f} s (CPU {cpu_slope[0]:.3f}), pipeline {slope[1]:.3f} s (CPU {cpu_slope[1]:.3f}); "
                f"floor/pipeline {slope[0] / slope[1]:.3f}; fixed floor {fixed[0]:.1f} s, pipeline {fixed[1]:.1f} s",
                flush=True,
            )
        print(
            f"{dtype} ({resolved_dtype(dtype)}), {args.repeat} rounds: per image floor {spread(figures['floor'])} s, "
            f"pipeline {spread(figures['pipeline'])} s; floor/pipeline {spread(figures['ratio'])}; pipeline's fixed "
            f"cost above the floor's {spread(figures['fixed'])} s",
            flush=True,
        )


def dtype_speed(args) -> None:
    """The pipeline in float32 against the pipeline in ``--dtype`` (auto by default), interleaved."""
    work = Path(tempfile.mkdtemp(prefix="capfilt-bench-"))
    pattern = write_shards(work / "in", args.shards, args.images // args.shards)
    other = args.dtype if args.dtype != "float32" else "auto"
    commands = {}
    for dtype in ("float32", other):
        args.dtype = dtype
        commands[dtype] = throughput_commands(args, pattern, work / f"out-{dtype}", work / "scores.json")[1]
    seconds: dict[str, list[float]] = {dtype: [] for dtype in commands}
    for round_ in range(args.repeat):
        load = load_average()
        for dtype, command in commands.items():
            seconds[dtype].append(measured(command)[0])
        print(
            f"round {round_ + 1} (load {load:.2f}->{load_average():.2f}): "
            + ", ".join(f"{dtype} {values[-1]:.1f} s" for dtype, values in seconds.items()),
            flush=True,
        )
    base, fast = median(seconds["float32"]), median(seconds[other])
    print(
        f"median of {args.repeat}: float32 {base:.1f} s, {other} ({resolved_dtype(other, args.device)}) {fast:.1f} s: "
        f"{base / fast:.2f}x float32 throughput"
    )


def profile(args) -> None:
    """Where the pipeline's time goes beside the floor's: both run interleaved ``--repeat`` times, each phase's
    median wall and CPU seconds printed side by side (CPU seconds are the whole process's, so on the pipeline's
    side the prefetch thread's decoding counts in the phase it overlaps). Process start and exit (outside either
    program's own clock) come from the wall time measured around each process; the CPU total is the process
    tree's, start and exit included."""
    work = Path(tempfile.mkdtemp(prefix="capfilt-bench-"))
    pattern = write_shards(work / "in", args.shards, args.images // args.shards)
    if args.defaults:  # the pipeline as users run it: its own batch sizes, threads and prefetching
        floor, pipeline = default_commands(args, pattern, work / "out", args.dtype)
    else:
        floor, pipeline = throughput_commands(args, pattern, work / "out", work / "floor_scores.json")
    phases_file = work / "phases.json"
    pipeline = [sys.executable, "-m", "bench.profile_run", str(phases_file), *pipeline[3:]]
    rounds: dict[str, list[dict]] = {"floor": [], "pipeline": [], "floor CPU": [], "pipeline CPU": []}
    for round_ in range(args.repeat):
        load = load_average()
        wall, _, stdout = measured(floor)
        report = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
        rounds["floor"].append({**report["phases"], "process start and exit": wall - report["seconds"], "total": wall})
        rounds["floor CPU"].append({**report["cpu"], "total": LAST_CPU_SECONDS[0]})
        wall, _, _ = measured(pipeline)
        report = json.loads(phases_file.read_text())
        rounds["pipeline"].append(
            {**report["seconds"], "process start and exit": wall - report["total"], "total": wall}
        )
        rounds["pipeline CPU"].append({**report["cpu"], "total": LAST_CPU_SECONDS[0]})
        print(
            f"round {round_ + 1}: load {load:.2f}->{load_average():.2f}, floor {rounds['floor'][-1]['total']:.1f} s "
            f"(CPU {rounds['floor CPU'][-1]['total']:.1f} s), pipeline {rounds['pipeline'][-1]['total']:.1f} s "
            f"(CPU {rounds['pipeline CPU'][-1]['total']:.1f} s)",
            flush=True,
        )
    names = list(dict.fromkeys([*rounds["pipeline"][0], *rounds["floor"][0]]))
    names.remove("total")
    print("| phase | floor wall | pipeline wall | floor CPU | pipeline CPU | pipeline - floor, CPU |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in [*names, "total"]:
        f, p, fc, pc = (median([r.get(name, 0.0) for r in rounds[side]]) for side in rounds)
        print(f"| {name} | {f:.2f} | {p:.2f} | {fc:.2f} | {pc:.2f} | {pc - fc:+.2f} |")


def memory(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="capfilt-bench-"))
    sets = ["runtime.threads=0"]
    figures = {}
    for shards in (2, 8):
        pattern = write_shards(work / f"in{shards}", shards, args.per_shard)
        seconds, rss, _ = measured(pipeline_command(pattern, work / f"out{shards}", sets))
        figures[shards] = rss
        images = shards * args.per_shard
        print(
            f"{shards} shards x {args.per_shard} images: {seconds:.1f} s, {images / seconds:.1f} img/s, "
            f"peak RSS {rss:.0f} MiB",
            flush=True,
        )
    print(f"peak RSS 8 shards / 2 shards: {figures[8] / figures[2]:.3f}")


def workers(args) -> None:
    """Worker-process scaling, measured two ways.

    Per core: one worker process on one core against two on two cores, the way Dataflow and Flink give each
    SDK process a core; this shows whether anything but the cores limits more processes. On the whole
    machine: one worker on every core (its torch threads use them all) against two, which on a 2-core host
    leaves only what intra-op threads fail to use.

    Besides wall time (start-up and shutdown included), each run prints its steady-state throughput: images
    over the shard-processing seconds of ``report.json`` divided among the workers, which is what a long run
    converges to once the per-process start-up is paid.
    """
    work = Path(tempfile.mkdtemp(prefix="capfilt-bench-"))
    pattern = write_shards(work / "in", args.shards, args.per_shard)
    images = args.shards * args.per_shard
    every_core = sorted(os.sched_getaffinity(0))  # Linux only, as is pinning a process to cores
    runs = (
        ("1 worker, 1 core", 1, every_core[:1]),
        ("1 worker, all cores", 1, every_core),
        (f"2 workers, {min(2, len(every_core))} cores", 2, every_core[:2]),
    )
    times, steady = {}, {}
    for name, count, cores in runs:
        beam = [f"--direct_num_workers={count}", "--direct_running_mode=multi_processing"] if count > 1 else []
        # Threads come from the run's policy (usable cores / processes), so a pinned run gets one per core.
        seconds, _, _ = measured(pipeline_command(pattern, work / "out", ["runtime.threads=0"], beam), cores=cores)
        shard_seconds = json.loads((work / "out" / "report.json").read_text())["totals"]["model_seconds"]
        times[name], steady[name] = seconds, images / (shard_seconds / count)
        print(
            f"{name} (cores {cores}): {seconds:.1f} s, {images / seconds:.1f} img/s; "
            f"steady state {steady[name]:.1f} img/s",
            flush=True,
        )
    one_core, all_cores, two = (r[0] for r in runs)
    for label, one in (("a core each", one_core), ("on all cores", all_cores)):
        print(
            f"2 workers / 1 worker, {label}: {times[one] / times[two]:.3f} wall, "
            f"{steady[two] / steady[one]:.3f} steady state"
        )


def precision(args) -> None:
    """How much faster bfloat16 is than float32 on this machine, and how far the ITM scores move."""
    from capfilt.models.captioner import Captioner
    from capfilt.models.itm import ItmScorer

    rng = random.Random(0)
    pictures = [Image.open(io.BytesIO(photo(rng))).convert("RGB") for _ in range(args.images)]
    texts = [[f"a photo of a red cat number {i}", "a picture of a dog", "blue"] for i in range(args.images)]
    results = {}
    for dtype in ("float32", "bfloat16"):
        scorer = ItmScorer.from_pretrained(args.itm, dtype=dtype, batch_size=24)
        captioner = Captioner.from_pretrained(args.captioner, dtype=dtype, num_captions=2, min_length=16, max_length=16)
        started = time.monotonic()
        scores = scorer.score(pictures, texts)
        itm_s = time.monotonic() - started
        started = time.monotonic()
        captioner.caption(pictures[:8], seed=0)
        caption_s = time.monotonic() - started
        results[dtype] = [s for row in scores for s in row]
        print(
            f"{dtype}: ITM {args.images} images x 3 captions {itm_s:.1f} s; captioning 8 images x 2 {caption_s:.1f} s",
            flush=True,
        )
    drift = [abs(a - b) for a, b in zip(results["float32"], results["bfloat16"])]
    print(f"bfloat16 vs float32 ITM score: mean |diff| {sum(drift) / len(drift):.4f}, max |diff| {max(drift):.4f}")


def batch_cost(args) -> None:
    """Seconds per image of each model pass at each batch size, in this process through the pipeline's own
    wrappers (pixels made once, as the pipeline makes them ahead): captioning (``--num-captions`` of
    ``--max-length`` tokens) per ``captioner.batch_size``, the ITM vision pass and text pass (three candidates per
    image) per ``filter.batch_size``. Rounds interleave the sizes; medians and spread. On a CPU this is what sets
    the default batch sizes: larger batches are not cheaper per image there."""
    import torch

    from capfilt.models.captioner import Captioner
    from capfilt.models.itm import ItmScorer
    from capfilt.models.loading import resolve_dtype

    torch.set_num_threads(args.threads or usable_cores())
    dtype = resolve_dtype(args.dtype, "cpu")
    rng = random.Random(0)
    images = [Image.open(io.BytesIO(photo(rng))).convert("RGB") for _ in range(args.images)]
    captioner = Captioner.from_pretrained(
        args.captioner,
        dtype=dtype,
        num_captions=args.num_captions,
        min_length=args.max_length,
        max_length=args.max_length,
    )
    scorer = ItmScorer.from_pretrained(args.itm, dtype=dtype)
    pixels = captioner.image_processor(images, return_tensors="pt")["pixel_values"]
    texts = [
        [f"a photo of a red cat number {i}", "a picture of a small dog on the grass", "blue"]
        for i in range(len(images))
    ]
    features = scorer.vision_states(images, pixel_values=pixels)

    def captioning(size):
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            captioner.caption(chunk, seed=start, pixel_values=pixels[start : start + size])

    def vision(size):
        scorer.batch_size = size
        scorer.vision_states(images, pixel_values=pixels)

    def text(size):
        scorer.batch_size = size
        scorer.score(images, texts, vision_states=features)

    passes = {"caption": (captioning, args.caption_sizes), "itm vision": (vision, args.filter_sizes)}
    passes["itm text"] = (text, args.filter_sizes)
    seconds = {(name, size): [] for name, (_, sizes) in passes.items() for size in sizes}
    for round_ in range(args.repeat):
        for name, (run, sizes) in passes.items():
            for size in sizes if round_ % 2 == 0 else sizes[::-1]:
                started = time.monotonic()
                run(size)
                seconds[name, size].append((time.monotonic() - started) / len(images))
        print(f"round {round_ + 1} done (load {load_average():.2f})", flush=True)
    print(f"| pass ({dtype}, {torch.get_num_threads()} threads) | batch size | s per image, median (min, max) |")
    print("| --- | --- | --- |")
    for (name, size), values in seconds.items():
        unit = "pairs" if name == "itm text" else "images"
        print(f"| {name} | {size} {unit} | {spread(values)} |")


def itm_cost(args) -> None:
    """What each extra candidate caption costs, against a full image-text pair (one candidate per image)."""
    from capfilt.models.itm import ItmScorer

    rng = random.Random(0)
    pictures = [Image.open(io.BytesIO(photo(rng))).convert("RGB") for _ in range(args.images)]
    scorer = ItmScorer.from_pretrained(args.itm, batch_size=64)
    scorer.score(pictures[:2], [["warm up"]] * 2)
    timings = {}
    for count in (1, 1 + args.extra):
        texts = [[f"a photo of a red cat number {i} variant {j}" for j in range(count)] for i in range(args.images)]
        started = time.monotonic()
        scorer.score(pictures, texts)
        timings[count] = time.monotonic() - started
        print(f"{args.images} images x {count} candidate(s): {timings[count]:.2f} s", flush=True)
    per_extra = (timings[1 + args.extra] - timings[1]) / (args.extra * args.images)
    per_pair = timings[1] / args.images
    print(
        f"extra candidate: {per_extra:.3f} s = {per_extra / per_pair:.3f} of a full image-text pair ({per_pair:.3f} s)"
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run that ``throughput`` and ``profile`` measure on both sides."""
    parser.add_argument("--captioner", required=True)
    parser.add_argument("--itm", required=True)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--num-captions", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16, float16 or auto")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each the floor then the pipeline")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N], on both sides")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("throughput", "profile", "dtype-speed"):
        add_run_arguments(commands.add_parser(name))
    commands.choices["profile"].add_argument(
        "--defaults", action="store_true", help="the pipeline at its default batch sizes, threads and prefetching"
    )
    per = commands.add_parser("per-image", conflict_handler="resolve")
    add_run_arguments(per)
    per.add_argument("--images", type=int, nargs=2, default=[32, 96], help="the two counts the slope runs between")
    per.add_argument("--dtypes", nargs="+", default=["auto", "float32"])
    per.add_argument("--set", action="append", default=[], help="KEY=VALUE for the pipeline only (a variant)")
    per.add_argument("--env", action="append", default=[], help="NAME=VALUE in the pipeline's environment")
    m = commands.add_parser("memory")
    m.add_argument("--per-shard", type=int, default=256)
    w = commands.add_parser("workers")
    w.add_argument("--shards", type=int, default=8)
    w.add_argument("--per-shard", type=int, default=256)
    p = commands.add_parser("precision")
    p.add_argument("--captioner", required=True)
    p.add_argument("--itm", required=True)
    p.add_argument("--images", type=int, default=16)
    b = commands.add_parser("batch-cost")
    b.add_argument("--captioner", required=True)
    b.add_argument("--itm", required=True)
    b.add_argument("--images", type=int, default=48)
    b.add_argument("--num-captions", type=int, default=2)
    b.add_argument("--max-length", type=int, default=16)
    b.add_argument("--dtype", default="auto")
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--caption-sizes", type=int, nargs="+", default=[4, 8, 16, 24])
    b.add_argument("--filter-sizes", type=int, nargs="+", default=[8, 16, 24, 32, 48])
    c = commands.add_parser("itm-cost")
    c.add_argument("--itm", required=True)
    c.add_argument("--images", type=int, default=8)
    c.add_argument("--extra", type=int, default=4)
    args = parser.parse_args()
    started = time.monotonic()
    run = {
        "throughput": throughput,
        "profile": profile,
        "dtype-speed": dtype_speed,
        "per-image": per_image,
        "memory": memory,
        "workers": workers,
        "precision": precision,
        "itm-cost": itm_cost,
        "batch-cost": batch_cost,
    }
    run[args.command](args)
    print(f"(benchmark took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
