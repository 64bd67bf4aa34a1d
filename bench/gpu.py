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
import tempfile
import threading
from pathlib import Path

from bench.bench import measured, throughput_commands, write_shards


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


def commands(args, pattern: str, out: Path, dtype: str, batch: int) -> tuple[list[str], list[str]]:
    """The floor's command and the pipeline's at ``dtype`` and ``batch`` (``bench.bench``'s, as ``throughput``
    runs them)."""
    args.dtype, args.batch_size = dtype, batch
    return throughput_commands(args, pattern, out, out.with_name(out.name + "-floor-scores.json"))


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
    parser.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0: usable cores)")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="capfilt-gpu-"))
    pattern = write_shards(work / "in", args.shards, args.images // args.shards, size=(width, height))
    best: dict[str, tuple[float, int]] = {}
    for dtype in args.dtypes.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            out = work / f"out-{dtype}-{batch}"
            watch = Utilisation()
            seconds, rss, _ = measured(commands(args, pattern, out, dtype, batch)[1])
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
        floor, pipeline = commands(args, pattern, work / "out-floor", dtype, batch)
        floor_s, _, _ = measured(floor)
        pipe_s, _, _ = measured(pipeline)
        print(
            f"{dtype} batch {batch}, model loading included on both sides: floor {args.images / floor_s:.1f} img/s "
            f"({floor_s:.1f} s), pipeline {args.images / pipe_s:.1f} img/s ({pipe_s:.1f} s): pipeline/floor "
            f"{floor_s / pipe_s:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
