#!/usr/bin/env bash
# Issue 30 in ONE `run` call on a lent GPU machine (15 minutes of device time per session, starts included).
# Installs offline the wheels `make gpu-kit` put in .gpu-wheels/, builds BLIP-base- and BLIP-large-shaped random
# checkpoints there (too large to carry), then runs bench.gpu (batch-size x dtype sweep: images/s, GPU busy %,
# peak memory; the pipeline against the floor at each dtype's best batch) and bench.feed (the decode side's rate
# on the machine's cores). Every step runs under a timeout and the whole script inside one time budget: a step
# that would start with under 30 s left is skipped, and a running one is cut at the budget. Everything printed
# goes to $OUT/session.log as well, nvidia-smi is sampled every second into $OUT/smi.csv, and bench.gpu's
# report.json files come back in $OUT/reports-base.tar.gz and $OUT/reports-large.tar.gz.
#
# Here, beforehand:  make gpu-kit        (downloads .gpu-wheels/, ~36 MB; the tree travels at ~58 MiB of 64)
# In a lent session, one call of the device tool's `run`:
#   command: bash bench/gpu_session.sh      carry: [".gpu-wheels"]      timeout_s: 540
#
# Knobs (environment variables, defaults in brackets):
#   GPU_BUDGET_S [450]  seconds for the whole script      GPU_DEVICE [cuda]
#   GPU_IMAGES [512]  GPU_SIZE [640x480]  GPU_NUM_CAPTIONS [5]  GPU_MAX_LENGTH [20]  GPU_IMAGE_SIZE [384]
#   GPU_BASE_BATCHES [32,128]  GPU_BASE_DTYPES [bfloat16,float16]
#   GPU_LARGE [1]  GPU_LARGE_BATCHES [64]  GPU_LARGE_DTYPES [bfloat16]      GPU_FEED [1]  GPU_FEED_THREADS [1,4,8,16]
#   GPU_PYTHON [python3]  GPU_DEPS [wheels: install .gpu-wheels offline; env: use GPU_PYTHON's own packages]
#   GPU_WORK [/tmp/capfilt-gpu-session]
# e.g. `GPU_LARGE=0 GPU_BASE_BATCHES=64,128,256 bash bench/gpu_session.sh`. The dry run checked without a GPU:
#   OUT=/tmp/gs-out GPU_DEPS=env GPU_PYTHON=.venv/bin/python GPU_DEVICE=cpu GPU_IMAGES=4 GPU_SIZE=160x120 \
#   GPU_NUM_CAPTIONS=2 GPU_MAX_LENGTH=4 GPU_IMAGE_SIZE=64 GPU_BASE_BATCHES=4 GPU_BASE_DTYPES=bfloat16 GPU_LARGE=0 \
#   GPU_FEED_THREADS=1 bash bench/gpu_session.sh

set -u -o pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-/tmp/capfilt-gpu-session-out}
BUDGET=${GPU_BUDGET_S:-450}
PY=${GPU_PYTHON:-python3}
DEPS=${GPU_DEPS:-wheels}
DEVICE=${GPU_DEVICE:-cuda}
IMAGES=${GPU_IMAGES:-512}
SIZE=${GPU_SIZE:-640x480}
NUM_CAPTIONS=${GPU_NUM_CAPTIONS:-5}
MAX_LENGTH=${GPU_MAX_LENGTH:-20}
IMAGE_SIZE=${GPU_IMAGE_SIZE:-384}
WORK=${GPU_WORK:-/tmp/capfilt-gpu-session}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

SKIPPED=()
# step NAME CAP_SECONDS COMMAND...: COMMAND under `timeout` (which signals its whole process group), capped by
# what is left of the budget; skipped when under 30 s is left. Prints the time, the command, exit status, seconds.
step() {
    local name=$1 cap=$2
    shift 2
    local left=$((BUDGET - SECONDS))
    if ((left < 30)); then
        echo "### SKIPPED $name: ${left}s left of the ${BUDGET}s budget"
        SKIPPED+=("$name")
        return 125
    fi
    local limit=$((cap < left ? cap : left))
    echo
    echo "### $(date -u +%T) +${SECONDS}s $name (timeout ${limit}s): $*"
    local start=$SECONDS rc
    timeout -k 5 "$limit" "$@"
    rc=$?
    echo "### $name: rc=$rc after $((SECONDS - start))s$( ((rc == 124 || rc == 137)) && echo ' (TIMED OUT)')"
    return $rc
}

write_helpers() {
    cat >"$WORK/versions.py" <<'EOF'
import importlib.metadata as md, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "transformers", "tokenizers", "accelerate", "safetensors", "huggingface-hub", "numpy",
             "pyarrow", "pillow", "pyyaml", "protobuf", "grpcio", "requests", "packaging", "setuptools"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} MISSING")
import torch
cuda = torch.cuda.is_available()
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", cuda,
      torch.cuda.get_device_name(0) if cuda else "-", "cudnn", torch.backends.cudnn.version(),
      "sdpa flash", torch.backends.cuda.flash_sdp_enabled(), "threads", torch.get_num_threads())
EOF
    # Every requirement of capfilt (setup.py), apache-beam, webdataset and the kit's own wheels against what is
    # importable now; conflicting names go to the file named by the first argument.
    cat >"$WORK/requirements.py" <<'EOF'
import importlib.metadata as md, re, sys
from packaging.requirements import Requirement
setup = open("setup.py").read().split("install_requires=[", 1)[1].split("]", 1)[0]
reqs = [("capfilt", r) for r in re.findall(r'^\s*"([^"]+)",', setup, re.M)]
for dist in ("apache-beam", "webdataset", "cryptography", "cffi", "pymongo", "httplib2", "proto-plus"):
    try:
        reqs += [(dist, r) for r in md.requires(dist) or []]
    except md.PackageNotFoundError:
        print(f"MISSING  {dist}")
conflicts = []
for who, text in reqs:
    r = Requirement(text)
    if r.marker and not r.marker.evaluate({"extra": ""}):
        continue
    try:
        version = md.version(r.name)
    except md.PackageNotFoundError:
        note = " (expected: PyAV is left out of the kit, video only)" if r.name == "av" else ""
        print(f"MISSING  {r.name} for {who}: {text}{note}")
        continue
    if r.specifier and not r.specifier.contains(version, prereleases=True):
        print(f"CONFLICT {r.name} {version} for {who}: {text}")
        conflicts.append(r.name)
    else:
        print(f"ok       {r.name} {version} for {who}: {text}")
open(sys.argv[1], "w").write("".join(f"{name}\n" for name in sorted(set(conflicts))))
print("conflicts:", ", ".join(sorted(set(conflicts))) or "none")
EOF
    cat >"$WORK/imports.py" <<'EOF'
import time
t = time.monotonic()
import apache_beam as beam, braceexpand, numpy, webdataset
from apache_beam.testing.util import assert_that, equal_to
import capfilt, capfilt.cli, capfilt.pipeline.launch, capfilt.models.loading, capfilt.demo.training.tiny
print("apache_beam", beam.__version__, "webdataset", webdataset.__version__, "numpy", numpy.__version__,
      "capfilt", capfilt.__version__, "from", capfilt.__file__, f"imports {time.monotonic() - t:.1f}s")
with beam.Pipeline() as p:  # the in-process runner end to end with this numpy, protobuf and pyarrow
    assert_that(p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * x), equal_to([1, 4, 9]))
print("a Beam pipeline ran")
EOF
}

collect() { # collect NAME: the report.json and floor scores of bench.gpu's runs under $WORK/tmp-NAME
    (cd "$WORK/tmp-$1" && find . -name report.json -o -name '*floor-scores.json' | tar czf "$OUT/reports-$1.tar.gz" -T -) ||
        echo "### nothing collected for $1"
}

gpu_bench() { # gpu_bench NAME CHECKPOINTS BATCHES DTYPES CAP: bench.gpu, its shards and outputs under $WORK/tmp-NAME
    mkdir -p "$WORK/tmp-$1"
    export TMPDIR=$WORK/tmp-$1
    step "bench.gpu-$1" "$5" "$PY" -m bench.gpu --captioner "$2/captioner" --itm "$2/itm" --images "$IMAGES" \
        --size "$SIZE" --num-captions "$NUM_CAPTIONS" --max-length "$MAX_LENGTH" --batch-sizes "$3" --dtypes "$4" \
        --device "$DEVICE"
    unset TMPDIR
    collect "$1"
}

main() {
    # 0. The machine and the software on it.
    local smi=
    if command -v nvidia-smi >/dev/null; then
        step nvidia-smi 30 nvidia-smi
        step gpu-query 30 nvidia-smi --format=csv \
            --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit,persistence_mode
        nvidia-smi --format=csv -l 1 \
            --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,power.draw,clocks.sm,temperature.gpu \
            >"$OUT/smi.csv" 2>&1 </dev/null &
        smi=$!
    fi
    echo "### host: $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB memory, kernel $(uname -r)," \
        "disk free $(df -h /tmp | awk 'NR == 2 {print $4}'); python: $(command -v "$PY"); budget ${BUDGET}s"
    echo "### tree: $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-100); changed: $(git status --short 2>/dev/null | wc -l) paths"
    write_helpers
    step versions 60 "$PY" "$WORK/versions.py"

    # 1. The missing packages, offline, into a folder on PYTHONPATH; capfilt itself as its package_dir lays it
    #    out (src/capfilt, with pipeline/, models/ and demo/ beneath it), through links into this checkout.
    local deps=$WORK/deps src=$WORK/src
    mkdir -p "$src/capfilt"
    ln -s "$REPO"/src/capfilt/*.py "$src/capfilt/"
    ln -s "$REPO/pipeline" "$REPO/models" "$REPO/demo" "$src/capfilt/"
    if [ "$DEPS" = wheels ]; then
        local pip=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check)
        step install-wheels 180 "${pip[@]}" --target "$deps" .gpu-wheels/*.whl || {
            echo "### the wheels did not install: stopping (did the run carry .gpu-wheels? run make gpu-kit here)"
            finish "$smi"
            return 1
        }
        export PYTHONPATH=$src:$deps${PYTHONPATH:+:$PYTHONPATH}
    else
        export PYTHONPATH=$src${PYTHONPATH:+:$PYTHONPATH}
    fi
    echo "### PYTHONPATH=$PYTHONPATH"

    # 2. Requirements: a conflict is reported, not fatal (apache-beam 2.77 asks numpy<2.5, pyarrow<26,
    #    protobuf<7, pillow<13, python-dateutil<3, and the machine was seen with numpy 2.5.2); a conflicting
    #    package with a wheel in .gpu-wheels/fallback (protobuf, python-dateutil) is shadowed by that wheel. Then
    #    the imports and a Beam pipeline, before any long step.
    step requirements 60 "$PY" "$WORK/requirements.py" "$WORK/conflicts"
    if [ "$DEPS" = wheels ] && [ -s "$WORK/conflicts" ]; then
        local name fallback=()
        while read -r name; do
            fallback+=($(ls .gpu-wheels/fallback/"${name//-/_}"-*.whl 2>/dev/null))
        done <"$WORK/conflicts"
        if ((${#fallback[@]})); then
            step install-fallback 60 "${pip[@]}" --upgrade --target "$deps" "${fallback[@]}" &&
                step requirements-again 60 "$PY" "$WORK/requirements.py" "$WORK/conflicts"
        fi
    fi
    step imports 120 "$PY" "$WORK/imports.py" || echo "### IMPORTS FAILED: the runs below will fail too; see above"

    # 3. Base-shaped checkpoints: the batch-size x dtype sweep and the pipeline against the floor.
    local base=$WORK/blip-base-random
    if step build-base 150 "$PY" -m bench.base_models --output "$base" --image-size "$IMAGE_SIZE"; then
        gpu_bench base "$base" "${GPU_BASE_BATCHES:-32,128}" "${GPU_BASE_DTYPES:-bfloat16,float16}" 300
    fi

    # 4. Large-shaped (BLIP-large's ViT-L/16 vision tower), with what time is left: not begun under 150 s, too
    #    little to build both models and run the pipeline and the floor once each.
    if [ "${GPU_LARGE:-1}" = 1 ] && ((BUDGET - SECONDS < 150)); then
        echo "### SKIPPED large: $((BUDGET - SECONDS))s left of the ${BUDGET}s budget"
        SKIPPED+=(large)
    elif [ "${GPU_LARGE:-1}" = 1 ]; then
        local large=$WORK/blip-large-random
        if step build-large 120 "$PY" -m bench.base_models --output "$large" --image-size "$IMAGE_SIZE" --large; then
            gpu_bench large "$large" "${GPU_LARGE_BATCHES:-64}" "${GPU_LARGE_DTYPES:-bfloat16}" 180
        fi
    fi

    # 5. The decode side alone: images/s that reading, decoding and preprocessing sustain per thread count.
    if [ "${GPU_FEED:-1}" = 1 ] && [ -d "$base/itm" ]; then
        step bench.feed 90 "$PY" -m bench.feed --captioner "$base/captioner" --itm "$base/itm" --images 256 \
            --size "$SIZE" --threads "${GPU_FEED_THREADS:-1,4,8,16}" --repeat 1
    fi

    finish "$smi"
}

finish() { # finish SAMPLER_PID: stops the nvidia-smi sampler this script started; what ran, what came back
    [ -n "$1" ] && kill "$1" 2>/dev/null
    echo
    echo "### done at +${SECONDS}s of ${BUDGET}s; skipped: ${SKIPPED[*]:-none}"
    ls -la "$OUT"
}

mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK"
main 2>&1 | tee "$OUT/session.log"
