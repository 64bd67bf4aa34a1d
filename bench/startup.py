"""`capfilt run ci` against what no capfilt can go below: a process that only imports Beam, torch and the
transformers BLIP classes (with the cyclic collector off, as capfilt runs them), and one that also does the ci
job's model work (``bench.floor``: the two demo models loaded, 256 images captioned 5 times and scored against
their web caption, written against transformers alone), without a Beam job.

    python -m bench.startup [--baseline OTHER_CAPFILT_EXECUTABLE] [--repeat 5]

``--baseline`` times another installation's ``capfilt run ci`` in the same rounds (e.g. a checkout of an older
commit installed in its own environment), for "fraction of the old wall time" figures. Rounds interleave
every command; medians of wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench.bench import LAST_CPU_SECONDS, load_average, measured, median

IMPORTS = (
    "import gc; gc.disable(); import apache_beam, torch; "
    "from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipProcessor"
)
# The ci pipeline's model work (pipelines.yaml: ci) on its demo input, written against transformers alone
# (bench.floor), after importing Beam, with the collector off: no Beam job, no writing.
MODEL_WORK = (
    "import gc, runpy, sys; gc.disable(); import apache_beam; "
    f"sys.argv[0] = {str(Path(__file__).with_name('floor.py'))!r}; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def model_work(demo_input: str) -> list[str]:
    from capfilt.models.loading import EMBEDDED_DIR, resolve_dtype

    options = ["--num-captions=5", "--min-length=5", "--length=24", "--batch-size=64"]
    return [
        sys.executable,
        "-c",
        MODEL_WORK,
        "--input",
        f"{demo_input}/*.tar",
        "--captioner",
        str(EMBEDDED_DIR / "captioner"),
        "--itm",
        str(EMBEDDED_DIR / "itm"),
        *options,
        f"--dtype={resolve_dtype('auto', 'cpu')}",
    ]


def capfilt_ci(executable: str) -> list[str]:
    return [executable, "run", "ci"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="another capfilt executable to time beside this one")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    here = str(Path(sys.executable).with_name("capfilt"))
    work = Path(tempfile.mkdtemp(prefix="capfilt-startup-"))
    # The ci run writes its demo input under the folder it runs in; the model-work floor reads the same shards.
    measured(capfilt_ci(here), cwd=work / "warm")
    demo_input = str(work / "warm" / "capfilt-ci" / "input")
    commands = {
        "imports only": [sys.executable, "-c", IMPORTS],
        "imports + the ci model work": model_work(demo_input),
        "capfilt run ci": capfilt_ci(here),
    }
    if args.baseline:
        commands["baseline capfilt run ci"] = capfilt_ci(args.baseline)
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(args.repeat):
        load = load_average()
        for name, command in commands.items():
            folder = work / f"round{round_}-{len(wall[name])}-{name.replace(' ', '_')}"
            seconds, _, _ = measured(command, cwd=folder)
            wall[name].append(seconds)
            cpu[name].append(LAST_CPU_SECONDS[0])
            shutil.rmtree(folder, ignore_errors=True)
        print(
            f"round {round_ + 1} (load {load:.2f}): "
            + ", ".join(f"{name} {values[-1]:.2f} s" for name, values in wall.items()),
            flush=True,
        )
    print(f"medians of {args.repeat}:")
    for name in commands:
        print(f"  {name}: {median(wall[name]):.2f} s wall, {median(cpu[name]):.2f} s CPU")
    if args.baseline:
        old = median(wall["baseline capfilt run ci"])
        for name in commands:
            print(f"  {name} / baseline capfilt run ci: {median(wall[name]) / old:.2f}")


if __name__ == "__main__":
    main()
