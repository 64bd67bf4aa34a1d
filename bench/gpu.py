"""The pipeline on a GPU: images/s and GPU utilisation over a batch-size sweep per dtype, then the pipeline against
the floor (``bench.floor``, the same work written against transformers alone) at the best batch size of each
dtype. Base-shaped checkpoints (``python -m bench.base_models``) or the real ones by path.

    python -m bench.gpu --captioner DIR --itm DIR [--images 512 --batch-sizes 16,32,64,128 --dtypes float16,bfloat16]

Utilisation comes from ``nvidia-smi`` sampled every 100 ms while the pipeline runs: the mean over the whole run
(start-up included) and over the samples after the first busy one (the model phase). Steady-state images/s is
images over the shards' own seconds (``report.json``), without start-up. Whether decoding keeps the GPU fed is
``bench.feed`` on the same machine: the CPU side's images/s against the steady state here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.bench import measured, pipeline_command, write_shards


class Utilisation:
    """``nvidia-smi``'s GPU utilisation (%) and memory used (MiB), sampled in the background."""

    def __init__(self, period_ms: int = 100):
        self.samples: list[tuple[float, float]] = []
        self._process = None
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
            self._process = subprocess.Popen([*query, f"-lms={period_ms}"], stdout=subprocess.PIPE, text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                busy, memory = (float(x) for x in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((busy, memory))

    def stop(self) -> str:
        if self._process is None:
            return "utilisation n/a (no nvidia-smi)"
        self._process.terminate()
        self._process.wait()
        self._reader.join(timeout=2)
        busy = [b for b, _ in self.samples]
        if not busy:
            return "utilisation n/a (no samples)"
        first = next((i for i, b in enumerate(busy) if b > 0), len(busy))
        working = busy[first:] or [0.0]
        return (
            f"GPU busy {sum(busy) / len(busy):.0f}% of the run, {sum(working) / len(working):.0f}% from the first "
            f"kernel on; peak memory {max(m for _, m in self.samples):.0f} MiB"
        )


def sets(args, dtype: str, batch: int) -> list[str]:
    return [
        f"captioner.model={args.captioner}",
        f"filter.model={args.itm}",
        f"captioner.num_captions={args.num_captions}",
        f"captioner.min_length={args.max_length}",
        f"captioner.max_length={args.max_length}",
        f"captioner.batch_size={batch}",
        f"filter.batch_size={batch * (args.num_captions + 1)}",
        "filter.threshold=0",
        f"runtime.device={args.device}",
        f"runtime.dtype={dtype}",
    ]


def floor_command(args, pattern: str, dtype: str, batch: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.floor",
        "--input",
        pattern,
        "--captioner",
        args.captioner,
        "--itm",
        args.itm,
        f"--num-captions={args.num_captions}",
        f"--length={args.max_length}",
        f"--batch-size={batch}",
        f"--dtype={dtype}",
        "--device",
        args.device,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captioner", required=True)
    parser.add_argument("--itm", required=True)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--num-captions", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--batch-sizes", default="16,32,64,128")
    parser.add_argument("--dtypes", default="float16,bfloat16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="640x480", help="photo size, WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="capfilt-gpu-"))
    pattern = write_shards(work / "in", args.shards, args.images // args.shards, size=(width, height))
    best: dict[str, tuple[float, int]] = {}
    for dtype in args.dtypes.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            out = work / f"out-{dtype}-{batch}"
            watch = Utilisation()
            seconds, rss, _ = measured(pipeline_command(pattern, out, sets(args, dtype, batch)))
            busy = watch.stop()
            shard_seconds = json.loads((out / "report.json").read_text())["totals"]["model_seconds"]
            steady = args.images / shard_seconds
            print(
                f"{dtype} batch {batch}: {args.images / seconds:.1f} img/s over {seconds:.1f} s, steady state "
                f"{steady:.1f} img/s; {busy}; peak RSS {rss:.0f} MiB",
                flush=True,
            )
            if steady > best.get(dtype, (0.0, 0))[0]:
                best[dtype] = (steady, batch)
    for dtype, (_, batch) in best.items():
        floor_s, _, _ = measured(floor_command(args, pattern, dtype, batch))
        pipe_s, _, _ = measured(pipeline_command(pattern, work / "out-floor", sets(args, dtype, batch)))
        print(
            f"{dtype} batch {batch}, model loading included on both sides: floor {args.images / floor_s:.1f} img/s "
            f"({floor_s:.1f} s), pipeline {args.images / pipe_s:.1f} img/s ({pipe_s:.1f} s): pipeline/floor "
            f"{floor_s / pipe_s:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
