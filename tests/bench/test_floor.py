"""The benchmark's floor: written against transformers and torch only, and doing the pipeline's model work."""

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import rows, run

ROOT = Path(__file__).resolve().parent.parent.parent
FLOOR = ROOT / "bench" / "floor.py"


def test_the_floor_imports_nothing_of_capfilt():
    tree = ast.parse(FLOOR.read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert names and not [n for n in names if n.split(".")[0] in ("capfilt", "pipeline", "models", "demo", "bench")]
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]


def test_the_floor_scores_each_web_caption_as_the_pipeline_does(tiny_models, shards, tmp_path):
    # float32 on both sides: there the same work gives the same scores to rounding, whatever the batch order.
    assert run(tiny_models, shards, tmp_path / "out", "--set", "runtime.dtype=float32") == 0
    scores = tmp_path / "floor.json"
    command = [sys.executable, "-m", "bench.floor", "--input", str(shards / "*.tar"), "--captioner", tiny_models[0]]
    command += ["--itm", tiny_models[1], "--length", "3", "--batch-size", "4", "--threads", "1", "--dtype", "float32"]
    command += ["--scores", str(scores)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["images"] == 12 and {"model imports", "model load", "caption", "itm"} <= set(report["phases"])
    floor = json.loads(scores.read_text())
    pipeline = {r["key"]: r["web_score"] for r in rows(tmp_path / "out") if r["web_score"] is not None}
    assert len(pipeline) == 10
    for key, score in pipeline.items():
        assert abs(floor[key] - score) < 1e-5, key
